"""The fake Discord's interaction routes: callbacks and the interaction webhook."""

from __future__ import annotations

import time

from aiohttp import web

from tests.fakes.discord_http import (
    BODY,
    KEPT_CREATE_FLAGS,
    fail,
    invalid,
    json_response,
    no_content,
    snowflake,
    unknown,
)
from tests.fakes.discord_payloads import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    Json,
    is_empty_message,
)
from tests.fakes.discord_records import (
    MessageRecord,
)
from tests.fakes.discord_rest import DiscordRest
from tests.fakes.discord_state import InteractionState


class DiscordInteractions(DiscordRest):
    """Interaction callbacks (the 3 s deadline) and followup/original-message webhooks."""

    # --- REST: interactions and their webhooks ---------------------------------------------

    async def _post_callback(self, request: web.Request) -> web.Response:
        interaction_id = snowflake(request.match_info["interaction_id"], "interaction", 10062)
        state = self._interactions.get(interaction_id)
        if state is None or state.public.token != request.match_info["token"]:
            raise unknown("interaction", 10062)
        if state.callback_type is not None:
            raise fail(400, 40060, "Interaction has already been acknowledged.")
        now = time.monotonic()
        if now - state.public.dispatched_at > self.interaction_deadline:
            raise unknown("interaction", 10062)
        body = self._check_message(request[BODY].json)
        kind = body.get("type")
        # 1 (PONG) answers PINGs; 6/7 need a component or modal; 8 is autocomplete; a modal
        # cannot answer a modal.
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 5: (4, 5, 6, 7)}[state.public.kind]
        if kind not in allowed:
            choices = ", ".join(map(str, allowed))
            raise invalid(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {{{choices}}}.")
        data = self._check_message(body.get("data") or {}, ("data",))
        if kind == 4 and is_empty_message(data, 0):
            raise fail(400, 50006, "Cannot send an empty message")
        if kind == 9:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise invalid(("data",), "BASE_TYPE_REQUIRED", "This field is required")
            state.modal = data
        if kind == 7 and state.public.message_id in self._messages:
            record = self._messages[state.public.message_id]
            self._apply_edit(record, data)
            await self._broadcast_message("MESSAGE_UPDATE", record)
        if kind in (4, 5):
            state.original = (await self._interaction_message(state, data, kind)).id
        state.callback_type, state.acked_at = kind, now
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_response(200, self._callback_response(state, kind))
        return no_content()

    async def _interaction_message(
        self, state: InteractionState, data: Json, kind: int
    ) -> MessageRecord:
        interaction = state.public
        flags = int(data.get("flags") or 0) & KEPT_CREATE_FLAGS
        if kind == 5:
            data, flags = {}, (flags & FLAG_EPHEMERAL) | FLAG_LOADING
        record = self._new_message(
            interaction.channel_id,
            self._users[self.bot_user_id],
            data,
            type=20,
            flags=flags,
            webhook_id=self.application_id,
            interaction_id=interaction.id,
            interaction={
                "id": str(interaction.id),
                "type": 2,
                "name": interaction.name,
                "user": self._user(interaction.user_id),
                "authorizing_integration_owners": {"0": str(interaction.guild_id or 0)},
            },
        )
        await self._broadcast_message("MESSAGE_CREATE", record)
        return record

    def _callback_response(self, state: InteractionState, kind: int) -> Json:
        summary: Json = {"id": str(state.public.id), "type": 2}
        resource: Json = {"type": kind}
        if state.original is not None:
            original = self._messages[state.original]
            summary["response_message_id"] = str(original.id)
            summary["response_message_loading"] = bool(original.flags & FLAG_LOADING)
            summary["response_message_ephemeral"] = bool(original.flags & FLAG_EPHEMERAL)
            resource["message"] = original.to_json(self._users)
        return {"interaction": summary, "resource": resource}

    def _webhook_state(self, request: web.Request) -> InteractionState:
        if request.match_info["application_id"] != str(self.application_id):
            raise unknown("Webhook", 10015)
        interaction_id = self._tokens.get(request.match_info["token"])
        if interaction_id is None:
            raise fail(401, 50027, "Invalid Webhook Token")
        state = self._interactions[interaction_id]
        age = time.monotonic() - state.public.dispatched_at
        # Tokens die after 15 minutes, or at the deadline if the interaction was never answered.
        if age > self.interaction_token_ttl or (
            state.callback_type is None and age > self.interaction_deadline
        ):
            raise fail(401, 50027, "Invalid Webhook Token")
        if state.callback_type is None:
            raise unknown("Webhook", 10015)
        return state

    def _webhook_message(self, request: web.Request, state: InteractionState) -> MessageRecord:
        raw = request.match_info["message_id"]
        message_id = state.original if raw == "@original" else snowflake(raw, "Message", 10008)
        owned = {state.original, *state.followups}
        record = self._messages.get(message_id) if message_id in owned and message_id else None
        if record is None or record.deleted:
            raise unknown("Message", 10008)
        return record

    async def _post_followup(self, request: web.Request) -> web.Response:
        state = self._webhook_state(request)
        body = self._check_message(request[BODY].json)
        files = request[BODY].files
        if is_empty_message(body, len(files)):
            raise fail(400, 50006, "Cannot send an empty message")
        self._store_uploads(body, files)
        record = self._new_message(
            state.public.channel_id,
            self._users[self.bot_user_id],
            body,
            flags=int(body.get("flags") or 0) & KEPT_CREATE_FLAGS,
            webhook_id=self.application_id,
            interaction_id=state.public.id,
        )
        state.followups.append(record.id)
        await self._broadcast_message("MESSAGE_CREATE", record)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(200, record.to_json(self._users))
        return no_content()

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_message(request, self._webhook_state(request))
        return json_response(200, record.to_json(self._users))

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_message(request, self._webhook_state(request))
        body = self._check_message(request[BODY].json)
        if request[BODY].files:
            self._store_uploads(body, request[BODY].files)
        self._apply_edit(record, body)
        await self._broadcast_message("MESSAGE_UPDATE", record)
        return json_response(200, record.to_json(self._users))

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_message(request, self._webhook_state(request))
        record.deleted = True
        await self._broadcast_delete(record)
        return no_content()
