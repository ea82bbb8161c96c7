"""The buttons and the form the Discord adapter shows: 👍 / 👎 / talk to a person under a
finished answer, "Mark resolved" under a handover summary, and the 👎 "What was wrong?"
modal. Their custom ids carry what the click needs, so they work after a restart."""

from __future__ import annotations

import discord

PREFIX = "supportbot"
HELPFUL, NOT_HELPFUL, PERSON, RESOLVE, FORM = "up", "down", "person", "resolve", "form"
FORM_FIELD = "what_was_wrong"
FORM_SECONDS = 900.0  # an open form is forgotten after this


def custom_id(action: str, value: str) -> str:
    return f"{PREFIX}:{action}:{value}"


def parse(custom: str) -> tuple[str, str] | None:
    """(action, value) of one of our custom ids, None for anything else."""
    prefix, _, rest = custom.partition(":")
    action, _, value = rest.partition(":")
    if prefix != PREFIX or not action or not value:
        return None
    return action, value


def _finished(view: discord.ui.View) -> discord.ui.View:
    """Clicks are handled from their custom ids (see controls.py), not by this object, so it
    is stopped before sending and discord.py keeps no copy of it per message."""
    view.stop()
    return view


def reply_view(reply_id: str) -> discord.ui.View | None:
    if not reply_id:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Helpful", emoji="👍",
                                    custom_id=custom_id(HELPFUL, reply_id)))
    view.add_item(discord.ui.Button(label="Not helpful", emoji="👎",
                                    custom_id=custom_id(NOT_HELPFUL, reply_id)))
    view.add_item(discord.ui.Button(label="Talk to a person",
                                    style=discord.ButtonStyle.primary,
                                    custom_id=custom_id(PERSON, reply_id)))
    return _finished(view)


def summary_view(conversation_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Mark resolved", style=discord.ButtonStyle.success,
                                    custom_id=custom_id(RESOLVE, conversation_id)))
    return _finished(view)


class FeedbackForm(discord.ui.Modal, title="What was wrong?"):
    """The 👎 form; its submission is handled from its custom id, like the buttons."""

    answer: discord.ui.TextInput[FeedbackForm] = discord.ui.TextInput(
        label="Tell the team what was missing or wrong", style=discord.TextStyle.paragraph,
        required=False, max_length=2000, custom_id=FORM_FIELD)

    def __init__(self, reply_id: str) -> None:
        super().__init__(timeout=FORM_SECONDS, custom_id=custom_id(FORM, reply_id))
        self.stop()  # handled from its custom id: discord.py keeps no copy of it


def form_text(data: object) -> str:
    """The text typed into the form, from a modal-submit interaction's raw data."""
    if not isinstance(data, dict):
        return ""
    for row in data.get("components") or []:
        for item in row.get("components") or []:
            if item.get("custom_id") == FORM_FIELD:
                return str(item.get("value") or "").strip()
    return ""
