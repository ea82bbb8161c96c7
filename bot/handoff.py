"""Handing a conversation to a person, in plain values and words (pure, no I/O).

A person asks for a human (a button, a command, words the model recognises, or the "I don't
know" reply's offer); the bot posts a summary to the team's escalation channel, tells the
asker honestly what happens next, and stays quiet in the thread until a person gives it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.conversation import ConversationKey

DEFAULT_CONTACT = "Please contact the team directly."
AGENT_LABEL = "(A person from the team replied:)"  # how the model sees their turns
MAX_QUOTED = 600  # characters of the question and of the bot's answer in the summary


@dataclass(frozen=True)
class HandoffSummary:
    """What the team's escalation channel is told."""

    key: ConversationKey
    asker_id: str
    asker_name: str
    question: str
    answer: str
    sources: tuple[tuple[str, str], ...]  # (title, link or file)
    reason: str  # button / command / words / dont_know
    request: str = ""  # the message that asked for a person, when it was not the question
    private: bool = False  # a direct message with the bot: the team cannot see or reply there

    @property
    def why(self) -> str:
        return {
            "button": "pressed *Talk to a person*",
            "command": "used /escalate",
            "words": "asked for a person",
            "dont_know": "asked for a person after the bot found nothing in the docs",
        }.get(self.reason, "asked for a person")


@dataclass(frozen=True)
class Handoff:
    """An open handover: who asked for it and where its summary is."""

    id: int
    key: ConversationKey
    asker_id: str
    summary_place: str  # platform-specific JSON, "" when no summary was posted


def told_asker(posted: bool, configured: bool, contact: str, private: bool = False) -> str:
    """What the asker reads: true to what happened, never "notified" unless it was."""
    if posted and private:
        return ("I've asked a person from the team to take over. This conversation is private, "
                "so they'll message you directly; until they're done I'll stay quiet here.")
    if posted:
        return ("I've asked a person from the team to take over. They'll reply in this thread; "
                "until they're done I'll stay quiet here.")
    if configured:
        return f"I tried to reach the team but couldn't just now. {contact}"
    return f"A person from the team can help with this. {contact}"


ALREADY_HANDLED = "A person from the team is already on this; they'll get back to you."
THANKS = "Thanks for the feedback!"  # a vote, on either platform
NOT_YOURS = ("Only the person who asked can hand this thread to the team. Ask your own "
             "question, and the button under its answer is yours.")
GIVEN_BACK = ("A person from the team marked this as resolved. I'm back: ask me anything else "
              "in this thread.")


def offer(escalation_ready: bool, contact: str) -> str:
    """The last line of the "I don't know" reply."""
    if escalation_ready:
        return "Want a person to help? Ask me for one and I'll hand this thread to the team."
    return f"A person from the team can help. {contact}"


def summary_place(channel: str | int, message: str | int) -> str:
    """Where a summary was posted, as the handover keeps it: a ✅ or a button on that
    message finds the handover by this exact text, whichever platform it is on."""
    return json.dumps({"channel": str(channel), "ts": str(message)}, sort_keys=True)


def summary_message(place: str) -> tuple[str, str]:
    """(channel, message) back from summary_place."""
    found = json.loads(place)
    return str(found.get("channel") or ""), str(found.get("ts") or "")


def quoted(text: str) -> str:
    """Each line as a block quote (the same "> " syntax in Slack mrkdwn and Discord)."""
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def clip(text: str, limit: int = MAX_QUOTED) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
