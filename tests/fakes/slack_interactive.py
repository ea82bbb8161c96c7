"""The interactive side of the fake Slack: people clicking buttons, submitting modals and
reacting, and the Web API methods that go with them (views.open, chat.getPermalink).

Faithful where the bot can tell: a click only finds a button the message really shows; its
payload is Slack's block_actions shape with a trigger_id that views.open accepts once, within
3 seconds; a modal's submission carries its private_metadata and state values; Block Kit
limits the bot could break (section text 3,000 characters, button value 2,000) are checked.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from tests.fakes import slack_events as ev
from tests.fakes.slack_events import Json
from tests.fakes.slack_state import ApiError, FakeMessage, _Reply
from tests.fakes.slack_wire import _need, _ok

TRIGGER_SECONDS = 3.0
SECTION_TEXT_MAX = 3000
BUTTON_VALUE_MAX = 2000
BUTTON_TEXT_MAX = 75


def check_blocks(blocks: list[Json] | None) -> None:
    """Refuse blocks the real API refuses (invalid_blocks) for the limits the bot meets."""
    for block in blocks or []:
        if block.get("type") == "section":
            if len(str((block.get("text") or {}).get("text", ""))) > SECTION_TEXT_MAX:
                raise ApiError("invalid_blocks")
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                if len(str(element.get("value", ""))) > BUTTON_VALUE_MAX:
                    raise ApiError("invalid_blocks")
                if len(str((element.get("text") or {}).get("text", ""))) > BUTTON_TEXT_MAX:
                    raise ApiError("invalid_blocks")


def find_button(message: FakeMessage, action_id: str) -> tuple[str, Json]:
    """The (block_id, button) a person could click on this message."""
    for block in message.blocks or ():
        for element in block.get("elements") or []:
            if element.get("type") == "button" and element.get("action_id") == action_id:
                return str(block.get("block_id", "")), element
    raise LookupError(f"the message shows no button {action_id!r}")


@dataclass
class Interactions:
    """Triggers handed out with clicks, and the modals views.open opened."""

    team_id: str
    app_id: str
    triggers: dict[str, float] = field(default_factory=dict)
    views: dict[str, Json] = field(default_factory=dict)  # view id → the view as opened

    def new_trigger(self) -> str:
        trigger = f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}"
        self.triggers[trigger] = time.monotonic()
        return trigger

    def block_actions(self, message: FakeMessage, action_id: str, user: str) -> Json:
        block_id, button = find_button(message, action_id)
        container: Json = {"type": "message", "message_ts": message.ts,
                           "channel_id": message.channel, "is_ephemeral": False}
        api_message: Json = {"type": "message", "user": message.user, "ts": message.ts,
                             "text": message.text, "blocks": list(message.blocks or ())}
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
            api_message["thread_ts"] = message.thread_ts
        if message.bot_id:
            api_message["bot_id"] = message.bot_id
        return {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "verification-token-unused",
            "container": container,
            "trigger_id": self.new_trigger(),
            "team": {"id": self.team_id, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": message.channel.lower()},
            "message": api_message,
            "state": {"values": {}},
            "response_url": f"https://hooks.slack.invalid/actions/{uuid.uuid4().hex}",
            "actions": [{
                "action_id": action_id, "block_id": block_id, "type": "button",
                "text": button.get("text"), "value": button.get("value", ""),
                "action_ts": ev.next_ts(),
            }],
        }

    def views_open(self, params: Json) -> _Reply:
        trigger = _need(params, "trigger_id", "invalid_trigger_id")
        issued = self.triggers.pop(trigger, None)
        if issued is None:
            raise ApiError("invalid_trigger_id")
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise ApiError("expired_trigger_id")
        view = params.get("view")
        if isinstance(view, str):  # a form body carries it as JSON text
            try:
                view = json.loads(view)
            except json.JSONDecodeError:
                raise ApiError("invalid_arguments") from None
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise ApiError("invalid_arguments")
        check_blocks(view.get("blocks"))
        view_id = "V" + uuid.uuid4().hex[:10].upper()
        self.views[view_id] = view
        return _ok(view={**view, "id": view_id, "team_id": self.team_id,
                         "app_id": self.app_id, "state": {"values": {}}})

    def view_submission(self, view_id: str, user: str, values: dict[str, dict[str, str]]
                        ) -> Json:
        """A person pressed the modal's submit button with these input values."""
        view = self.views.pop(view_id)
        state = {block: {action: {"type": "plain_text_input", "value": value}
                         for action, value in actions.items()}
                 for block, actions in values.items()}
        return {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team_id},
            "api_app_id": self.app_id,
            "trigger_id": self.new_trigger(),
            "view": {**view, "id": view_id, "state": {"values": state},
                     "private_metadata": view.get("private_metadata", ""),
                     "callback_id": view.get("callback_id", "")},
            "response_urls": [],
        }


def permalink(params: Json, messages: dict[str, dict[str, FakeMessage]],
              people: set[tuple[str, str]]) -> _Reply:
    channel = _need(params, "channel", "channel_not_found")
    ts = _need(params, "message_ts", "message_not_found")
    if ts not in messages.get(channel, {}) and (channel, ts) not in people:
        raise ApiError("message_not_found")
    return _ok(channel=channel,
               permalink=f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}")


def reaction_added(user: str, reaction: str, channel: str, ts: str, item_user: str) -> Json:
    """The reaction_added event Slack sends when a person reacts to a message. It names no
    team: the event_callback envelope's team_id does."""
    return {"type": "reaction_added", "user": user, "reaction": reaction,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "item_user": item_user, "event_ts": ev.next_ts()}
