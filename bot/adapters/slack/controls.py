"""The buttons under a finished answer (👍, 👎, talk to a person), the 👎 form, and the
handover summary's "Mark resolved" button, as Block Kit JSON. Pure."""

from __future__ import annotations

from typing import Any

Blocks = list[dict[str, Any]] | None

SECTION_LIMIT = 3000  # characters of a section block's text
HELPFUL, NOT_HELPFUL, HANDOFF, RESOLVE = (
    "supportbot_helpful", "supportbot_not_helpful", "supportbot_handoff", "supportbot_resolve")
FORM = "supportbot_feedback_form"
FORM_BLOCK, FORM_INPUT = "what_was_wrong", "text"
CONTROLS_TEXT = "Did this answer help?"


def _button(action_id: str, label: str, value: str, style: str = "") -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": value,
                              "text": {"type": "plain_text", "text": label, "emoji": True}}
    if style:
        button["style"] = style
    return button


def controls(reply_id: str) -> list[dict[str, Any]]:
    """One actions block: the reply's feedback buttons and the way to a person."""
    return [{"type": "actions", "block_id": "supportbot_reply", "elements": [
        _button(HELPFUL, "👍 Helpful", reply_id),
        _button(NOT_HELPFUL, "👎 Not helpful", reply_id),
        _button(HANDOFF, "Talk to a person", reply_id),
    ]}]


def reply_blocks(mrkdwn: str, reply_id: str) -> Blocks:
    """The final page as a section with the buttons under it; None when it is too long for
    one section (the buttons then go in a message of their own)."""
    if len(mrkdwn) > SECTION_LIMIT or not mrkdwn.strip():
        return None
    section = {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn,
                                           "verbatim": True}}
    return [section, *controls(reply_id)]


def summary_blocks(text: str, conversation_id: str) -> list[dict[str, Any]]:
    """The handover summary, with the button that gives the thread back to the bot."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT],
                                     "verbatim": True}},
        {"type": "actions", "block_id": "supportbot_summary", "elements": [
            _button(RESOLVE, "Mark resolved", conversation_id, "primary")]},
    ]


def feedback_form(reply_id: str) -> dict[str, Any]:
    """The 👎 modal: one optional multi-line answer."""
    return {
        "type": "modal", "callback_id": FORM, "private_metadata": reply_id,
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [{
            "type": "input", "block_id": FORM_BLOCK, "optional": True,
            "label": {"type": "plain_text", "text": "Tell the team what was missing or wrong"},
            "element": {"type": "plain_text_input", "action_id": FORM_INPUT,
                        "multiline": True, "max_length": 2000},
        }],
    }
