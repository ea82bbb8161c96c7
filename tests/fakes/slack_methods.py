"""The Web API method handlers of the fake Slack (chat.*, conversations.*, users.*, ...)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.fakes import slack_events as ev
from tests.fakes.slack_events import Json
from tests.fakes.slack_interactive import check_blocks
from tests.fakes.slack_socket_mode import SocketModeHub
from tests.fakes.slack_state import (
    MARKDOWN_MAX_CHARS,
    POST_MAX_CHARS,
    REPLIES_MAX_LIMIT,
    ApiError,
    FakeMessage,
    _Reply,
)
from tests.fakes.slack_wire import (
    _content,
    _decode_cursor,
    _encode_cursor,
    _int,
    _json_list,
    _need,
    _ok,
    _str,
)


class SlackMethods:
    """Mixin of FakeSlack: the Web API method handlers and the messages they keep."""

    # Set by FakeSlack.__init__.
    bot_user_id: str
    bot_id: str
    team_id: str
    app_id: str
    base_url: str
    update_max_bytes: int
    echo_bot_messages: bool
    statuses: list[tuple[str, str, str]]
    ephemerals: list[Json]
    socket_mode: SocketModeHub
    _messages: dict[str, dict[str, FakeMessage]]

    def messages(self, channel: str, thread_ts: str | None = None) -> list[FakeMessage]:
        """Messages in `channel` oldest first; with `thread_ts`, only that thread (parent first)."""
        found = list(self._messages.get(channel, {}).values())
        if thread_ts is not None:
            found = [m for m in found if thread_ts in (m.ts, m.thread_ts)]
        return sorted(found, key=lambda m: ev.ts_key(m.ts))

    def _auth_test(self, params: Json) -> _Reply:
        return _ok(
            url="https://fake-workspace.slack.com/",
            team="Fake Workspace",
            user="supportbot",
            team_id=self.team_id,
            user_id=self.bot_user_id,
            bot_id=self.bot_id,
            is_enterprise_install=False,
        )

    def _connections_open(self, params: Json) -> _Reply:
        return _ok(url=self.socket_mode.issue_url(self.base_url))

    # ----- messages --------------------------------------------------------------------------

    def _store(self, msg: FakeMessage) -> None:
        self._messages.setdefault(msg.channel, {})[msg.ts] = msg

    def _find(self, params: Json, ts_param: str = "ts") -> FakeMessage:
        channel = _need(params, "channel", "channel_not_found")
        ts = _need(params, ts_param, "message_not_found")
        msg = self._messages.get(channel, {}).get(ts)
        if msg is None:
            raise ApiError("message_not_found")
        return msg

    def _bot_message(self, channel: str, text: str, params: Json, **extra: Any) -> FakeMessage:
        return FakeMessage(
            channel=channel,
            ts=ev.next_ts(),
            text=text,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=_str(params, "thread_ts") or None,
            **extra,
        )

    def _post_message(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        text, blocks = _content(params)
        check_blocks(blocks)
        text = (text or "")[:POST_MAX_CHARS]
        msg = self._bot_message(channel, text, params, blocks=tuple(blocks) if blocks else None)
        self._store(msg)
        self._echo(self._message_event(msg))
        return _ok(channel=channel, ts=msg.ts, message=self._api_message(msg))

    def _update(self, params: Json) -> _Reply:
        msg = self._find(params)
        if msg.user != self.bot_user_id:
            raise ApiError("cant_update_message")
        text, blocks = _content(params)
        check_blocks(blocks)
        # Measured on the real API: the cap is 4,000 UTF-8 bytes, not characters.
        if text is not None and len(text.encode()) > self.update_max_bytes:
            raise ApiError("msg_too_long")
        new = replace(
            msg,
            text=msg.text if text is None else text,
            # Slack keeps the previous blocks unless the update sends some.
            blocks=msg.blocks if blocks is None else tuple(blocks),
            edits=msg.edits + 1,
            edited_ts=ev.next_ts(),
        )
        self._store(new)
        self._echo(self._change_event(new, msg, "message_changed"))
        return _ok(channel=new.channel, ts=new.ts, text=new.text, message=self._api_message(new))

    def _delete(self, params: Json) -> _Reply:
        msg = self._find(params)
        if msg.user != self.bot_user_id:
            raise ApiError("cant_delete_message")
        del self._messages[msg.channel][msg.ts]
        self._echo(self._change_event(msg, msg, "message_deleted"))
        return _ok(channel=msg.channel, ts=msg.ts)

    def _post_ephemeral(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        user = _need(params, "user", "user_not_in_channel")
        self.ephemerals.append({"channel": channel, "user": user, "text": _str(params, "text")})
        return _ok(message_ts=ev.next_ts())

    def _api_message(self, msg: FakeMessage, reply_count: int = 0) -> Json:
        """A message object as Slack returns it from chat.* and conversations.replies."""
        out: Json = {"type": "message", "user": msg.user, "text": msg.text, "ts": msg.ts}
        out["team"] = self.team_id
        if msg.bot_id is not None:
            out.update({"bot_id": msg.bot_id, "app_id": self.app_id})
        if msg.thread_ts is not None or reply_count:
            out["thread_ts"] = msg.thread_ts or msg.ts
        if reply_count:
            out["reply_count"] = reply_count
        if msg.blocks is not None:
            out["blocks"] = list(msg.blocks)
        if msg.files:
            out["files"] = list(msg.files)
        if msg.edited_ts is not None:
            out["edited"] = {"user": msg.user, "ts": msg.edited_ts}
        if msg.reactions:
            out["reactions"] = [
                {"name": n, "users": [self.bot_user_id], "count": 1} for n in msg.reactions
            ]
        return out

    # ----- native streaming (chat.startStream / appendStream / stopStream) --------------------

    def _stream_text(self, params: Json) -> str:
        """markdown_text plus the text of markdown_text chunks (what slack_sdk's helper sends)."""
        text = _str(params, "markdown_text")
        for chunk in _json_list(params.get("chunks"), "invalid_chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += str(chunk.get("text", ""))
        if len(text) > MARKDOWN_MAX_CHARS:
            raise ApiError("msg_too_long")
        return text

    def _streaming_message(self, params: Json) -> FakeMessage:
        msg = self._find(params)
        if not msg.streaming:
            raise ApiError("message_not_in_streaming_state")
        return msg

    def _start_stream(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        text = self._stream_text(params)
        msg = self._bot_message(channel, text, params, streaming=True)
        self._store(msg)
        self._echo(self._message_event(msg))
        return _ok(channel=channel, ts=msg.ts)

    def _append_stream(self, params: Json) -> _Reply:
        msg = self._streaming_message(params)
        text = self._stream_text(params)
        if not text and not params.get("chunks"):
            raise ApiError("no_text")
        self._store(replace(msg, text=msg.text + text, appends=msg.appends + 1))
        return _ok(channel=msg.channel, ts=msg.ts)

    def _stop_stream(self, params: Json) -> _Reply:
        msg = self._streaming_message(params)
        text = self._stream_text(params)
        blocks = _json_list(params.get("blocks"), "invalid_blocks")
        new = replace(
            msg,
            text=msg.text + text,
            streaming=False,
            blocks=tuple(blocks) if blocks else msg.blocks,
        )
        self._store(new)
        return _ok(channel=new.channel, ts=new.ts, message=self._api_message(new))

    # ----- conversations, users, reactions, assistant ---------------------------------------

    def _history(self, params: Json) -> _Reply:
        """conversations.history: the channel's top-level messages, newest first, up to
        `latest` (inclusive when asked), at most `limit` (Slack caps it at 999)."""
        channel = _need(params, "channel", "channel_not_found")
        latest = _str(params, "latest")
        inclusive = _str(params, "inclusive") in ("1", "true", "True")
        limit = max(1, min(_int(params, "limit", 100), 999))
        found = [m for m in self._messages.get(channel, {}).values()
                 if not m.thread_ts or m.thread_ts == m.ts]
        if latest:
            found = [m for m in found if ev.ts_key(m.ts) < ev.ts_key(latest)
                     or (inclusive and m.ts == latest)]
        found.sort(key=lambda m: ev.ts_key(m.ts), reverse=True)
        return _ok(messages=[self._api_message(m) for m in found[:limit]],
                   has_more=len(found) > limit)

    def _replies(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        ts = _need(params, "ts", "thread_not_found")
        thread = self.messages(channel, ts)
        if not thread or thread[0].ts != ts:
            raise ApiError("thread_not_found")
        limit = max(1, min(_int(params, "limit", REPLIES_MAX_LIMIT), REPLIES_MAX_LIMIT))
        cursor = _str(params, "cursor")
        start_ts = _decode_cursor(cursor) if cursor else ts
        rest = [m for m in thread if ev.ts_key(m.ts) >= ev.ts_key(start_ts)]
        page, more = rest[:limit], len(rest) > limit
        replies = len(thread) - 1
        body = [self._api_message(m, replies if m.ts == ts else 0) for m in page]
        next_cursor = _encode_cursor(rest[limit].ts) if more else ""
        return _ok(messages=body, has_more=more, response_metadata={"next_cursor": next_cursor})

    def _conversation_info(self, params: Json) -> _Reply:
        channel = _need(params, "channel", "channel_not_found")
        kind = ev.channel_type_of(channel)
        info: Json = {
            "id": channel,
            "is_channel": kind == "channel",
            "is_group": kind == "group",
            "is_im": kind == "im",
            "is_private": kind != "channel",
            "is_member": True,
        }
        if kind == "im":
            info["user"] = "U123"
        else:
            info["name"] = "chan-" + channel.lower()
        return _ok(channel=info)

    def _user_info(self, params: Json) -> _Reply:
        user = _need(params, "user", "user_not_found")
        is_bot = user == self.bot_user_id
        name = "supportbot" if is_bot else "user-" + user.lower()
        profile = {"display_name": name, "real_name": name.title()}
        return _ok(
            user={
                "id": user,
                "team_id": self.team_id,
                "name": name,
                "real_name": profile["real_name"],
                "is_bot": is_bot,
                "deleted": False,
                "tz": "Europe/London",
                "profile": profile,
            }
        )

    def _reaction_add(self, params: Json) -> _Reply:
        msg = self._find(params, "timestamp")
        name = _need(params, "name", "invalid_name")
        if name in msg.reactions:
            raise ApiError("already_reacted")
        self._store(replace(msg, reactions=(*msg.reactions, name)))
        return _ok()

    def _reaction_remove(self, params: Json) -> _Reply:
        msg = self._find(params, "timestamp")
        name = _need(params, "name", "invalid_name")
        if name not in msg.reactions:
            raise ApiError("no_reaction")
        self._store(replace(msg, reactions=tuple(r for r in msg.reactions if r != name)))
        return _ok()

    def _set_status(self, params: Json) -> _Reply:
        channel = _need(params, "channel_id", "channel_not_found")
        thread_ts = _need(params, "thread_ts", "invalid_arguments")
        self.statuses.append((channel, thread_ts, _str(params, "status")))
        return _ok()

    # ----- echo of the bot's own messages ----------------------------------------------------

    def _echo(self, event: Json) -> None:
        """Push the event Slack would send for the bot's own post/edit, when asked to."""
        if self.echo_bot_messages and self.socket_mode.connected:
            self.socket_mode.spawn(self.socket_mode.push(event))

    def _message_event(self, msg: FakeMessage) -> Json:
        return ev.message(
            msg.text,
            user=msg.user,
            channel=msg.channel,
            ts=msg.ts,
            thread_ts=msg.thread_ts,
            bot_id=msg.bot_id,
            team=self.team_id,
        )

    def _change_event(self, new: FakeMessage, old: FakeMessage, subtype: str) -> Json:
        return ev.message(
            new.text,
            user=new.user,
            channel=new.channel,
            ts=new.ts,
            thread_ts=new.thread_ts,
            bot_id=new.bot_id,
            subtype=subtype,
            previous_text=old.text,
            team=self.team_id,
        )
