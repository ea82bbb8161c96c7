"""The fake Discord's REST route handlers: identity, gateway, commands, channels, threads."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes.discord_http import (
    BODY,
    KEPT_CREATE_FLAGS,
    DiscordError,
    fail,
    invalid,
    json_response,
    no_content,
    snowflake,
    unknown,
)
from tests.fakes.discord_payloads import (
    FLAG_EPHEMERAL,
    INTENT_GUILDS,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    Json,
    is_empty_message,
    member_json,
    message_body_error,
)
from tests.fakes.discord_records import (
    MessageRecord,
    ThreadRecord,
)
from tests.fakes.discord_state import DiscordState


class DiscordRest(DiscordState):
    """REST handlers for users, commands, channels, messages and threads."""

    # --- REST: identity, gateway, commands -------------------------------------------------

    async def _get_gateway(self, request: web.Request) -> web.Response:
        data: Json = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            data["shards"] = self.recommended_shards
            data["session_start_limit"] = {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            }
        return json_response(200, data)

    async def _get_me(self, request: web.Request) -> web.Response:
        me = {**self._users[self.bot_user_id], "verified": True, "mfa_enabled": False}
        return json_response(200, me)

    def _known_user(self, request: web.Request) -> Json:
        user_id = snowflake(request.match_info["user_id"], "User", 10013)
        if user_id not in self._users:
            raise unknown("User", 10013)
        return self._users[user_id]

    async def _get_user(self, request: web.Request) -> web.Response:
        return json_response(200, self._known_user(request))

    async def _get_member(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != str(self.guild_id):
            raise unknown("Guild", 10004)
        return json_response(200, member_json(self._known_user(request), [], self._joined_at))

    async def _get_application(self, request: web.Request) -> web.Response:
        return json_response(
            200,
            {
                "id": str(self.application_id),
                "name": "supportbot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self._users[self.default_user_id],
                "verify_key": "0" * 64,
                "team": None,
                "flags": 1 << 19,
                "bot": self._users[self.bot_user_id],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
            },
        )

    def _command_scope(self, request: web.Request) -> int | None:
        if request.match_info["application_id"] != str(self.application_id):
            raise unknown("Application", 10002)
        guild = request.match_info.get("guild_id")
        if guild is not None and guild != str(self.guild_id):
            raise fail(403, 50001, "Missing Access")
        return int(guild) if guild is not None else None

    def _command_json(self, body: Any, scope: int | None, index: str | None) -> Json:
        path = (index,) if index is not None else ()
        if not isinstance(body, dict):
            raise invalid(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        name, kind = str(body.get("name", "")), int(body.get("type", 1))
        if not re.fullmatch(r"[-_'\w]{1,32}", name) or (kind == 1 and name != name.lower()):
            raise invalid(
                (*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if kind == 1 and not 1 <= len(str(body.get("description", ""))) <= 100:
            raise invalid(
                (*path, "description"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        existing = {c["name"]: c["id"] for c in self._commands.get(scope, [])}
        command = {
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "description": "",
            "options": [],
            **body,
            "id": existing.get(name) or str(self._ids.next()),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "type": kind,
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        elif command.get("integration_types") is None:
            # Unset, a global command is installable to guilds only (application-commands.mdx,
            # Application Command Object: integration_types "defaults to GUILD_INSTALL ([0])").
            command["integration_types"] = [0]
        return command

    async def _get_commands(self, request: web.Request) -> web.Response:
        return json_response(200, self._commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = request[BODY].json
        if not isinstance(body, list):
            raise invalid((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        commands = [self._command_json(item, scope, str(i)) for i, item in enumerate(body)]
        self._commands[scope] = commands
        return json_response(200, commands)

    async def _post_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        command = self._command_json(request[BODY].json, scope, None)
        existing = self._commands.setdefault(scope, [])
        is_new = all(c["id"] != command["id"] for c in existing)
        existing[:] = [c for c in existing if c["id"] != command["id"]] + [command]
        return json_response(201 if is_new else 200, command)

    # --- REST: channels and messages --------------------------------------------------------

    def _channel_id(self, request: web.Request) -> int:
        channel_id = snowflake(request.match_info["channel_id"], "Channel", 10003)
        self._channel_json(channel_id)
        return channel_id

    def _message(self, request: web.Request, channel_id: int) -> MessageRecord:
        message_id = snowflake(request.match_info["message_id"], "Message", 10008)
        record = self._messages.get(message_id)
        if record is None or record.deleted or record.channel_id != channel_id:
            raise unknown("Message", 10008)
        return record

    def _check_message(self, body: Any, prefix: tuple[str, ...] = ()) -> Json:
        if not isinstance(body, dict):
            raise invalid(
                prefix, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
        problem = message_body_error(body, prefix)
        if problem is not None:
            raise DiscordError(400, problem)
        return body

    def _check_reference(self, channel_id: int, body: Json) -> None:
        reference = body.get("message_reference")
        if not isinstance(reference, dict):
            return
        target_id = str(reference.get("message_id") or "")
        target = self._messages.get(int(target_id)) if target_id.isdigit() else None
        if target is None or target.deleted:
            if reference.get("fail_if_not_exists", True):
                raise invalid(
                    ("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            body.pop("message_reference")
            return
        body["message_reference"] = {
            "type": 0,
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
            **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
        }

    def _store_uploads(self, body: Json, files: Sequence[tuple[str, str, bytes]]) -> None:
        # discord.py names uploads files[N] and describes them in payload_json "attachments".
        described = {str(a.get("id")): a for a in body.get("attachments") or []}
        stored = []
        for field_name, filename, data in files:
            index = field_name.removeprefix("files[").removesuffix("]")
            name = described.get(index, {}).get("filename") or filename
            stored.append(self.add_attachment(name, "application/octet-stream", data))
        body["attachments"] = stored

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(200, self._channel_json(self._channel_id(request)))

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel_id(request)
        body = self._check_message(request[BODY].json)
        files = request[BODY].files
        if is_empty_message(body, len(files)):
            raise fail(400, 50006, "Cannot send an empty message")
        self._check_reference(channel_id, body)
        self._store_uploads(body, files)
        record = self._new_message(
            channel_id,
            self._users[self.bot_user_id],
            body,
            type=19 if "message_reference" in body else 0,
            flags=int(body.get("flags") or 0) & KEPT_CREATE_FLAGS & ~FLAG_EPHEMERAL,
        )
        await self._broadcast_message("MESSAGE_CREATE", record)
        await asyncio.sleep(self.write_delay)
        return json_response(200, record.to_json(self._users))

    async def _get_message(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        return json_response(200, record.to_json(self._users))

    async def _patch_message(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        body = self._check_message(request[BODY].json)
        if record.author_id != self.bot_user_id:
            raise fail(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(record, body)
        await self._broadcast_message("MESSAGE_UPDATE", record)
        await asyncio.sleep(self.write_delay)
        return json_response(200, record.to_json(self._users))

    async def _delete_message(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        record.deleted = True
        await self._broadcast_delete(record)
        return no_content()

    async def _put_reaction(self, request: web.Request) -> web.Response:
        record = self._message(request, self._channel_id(request))
        emoji = request.match_info["emoji"]
        if emoji not in record.reactions:
            record.reactions.append(emoji)
        return no_content()

    async def _post_typing(self, request: web.Request) -> web.Response:
        self.typing.append((self._channel_id(request), time.monotonic()))
        return no_content()

    async def _post_dm(self, request: web.Request) -> web.Response:
        body = request[BODY].json or {}
        recipient = str(body.get("recipient_id", ""))
        if not recipient.isdigit():
            raise invalid(("recipient_id",), "BASE_TYPE_REQUIRED", "This field is required")
        return json_response(200, self._channels[self._dm_channel(int(recipient))])

    # --- REST: threads ----------------------------------------------------------------------

    def _thread_name(self, body: Any) -> str:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise invalid(("name",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        return name

    def _thread_parent(self, request: web.Request) -> int:
        channel_id = self._channel_id(request)
        if self._channels.get(channel_id, {}).get("type") != 0:
            raise fail(400, 50024, "Cannot execute action on this channel type")
        return channel_id

    async def _new_thread(
        self, parent: int, body: Json, thread_type: int, thread_id: int
    ) -> web.Response:
        thread = ThreadRecord(
            id=thread_id,
            guild_id=self.guild_id,
            parent_id=parent,
            name=self._thread_name(body),
            type=thread_type,
            owner_id=self.bot_user_id,
            invitable=bool(body.get("invitable", True)),
            auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
            created_at=time.monotonic(),
            members={self.bot_user_id},
        )
        self._threads[thread.id] = thread
        event = {**thread.to_json(self.bot_user_id), "newly_created": True}
        await self._hub.broadcast("THREAD_CREATE", lambda i: event if i & INTENT_GUILDS else None)
        return json_response(201, thread.to_json(self.bot_user_id))

    async def _post_thread(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(request)
        body = request[BODY].json or {}
        # Without "type" Discord still creates a private thread, for historical reasons.
        thread_type = int(body.get("type", PRIVATE_THREAD))
        if thread_type not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise invalid(("type",), "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        if thread_type == PRIVATE_THREAD and not self.private_threads_allowed:
            raise fail(403, 50013, "Missing Permissions")
        return await self._new_thread(parent, body, thread_type, self._ids.next())

    async def _post_message_thread(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(request)
        record = self._message(request, parent)
        if record.id in self._threads:
            raise fail(400, 160004, "A thread has already been created for this message")
        # A thread started from a message takes the message's id.
        response = await self._new_thread(
            parent, request[BODY].json or {}, PUBLIC_THREAD, record.id
        )
        record.thread = self._threads[record.id].to_json()
        return response

    async def _put_thread_member(self, request: web.Request) -> web.Response:
        thread = self._threads.get(snowflake(request.match_info["channel_id"], "Channel", 10003))
        if thread is None:
            raise unknown("Channel", 10003)
        user = request.match_info["user_id"]
        user_id = self.bot_user_id if user == "@me" else snowflake(user, "User", 10013)
        thread.members.add(user_id)
        return no_content()
