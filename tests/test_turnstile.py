"""The question as the model sees it: a flood is cut at a word with a note, the rest whole."""

from __future__ import annotations

from bot.conversation import Arrival, ConversationKey, Incoming, Platform
from bot.turnstile import MAX_QUESTION_CHARS, is_cut, question_text

KEY = ConversationKey(Platform.SLACK, "T1", "C1", "1.0")


def incoming(text: str, notes: tuple[str, ...] = ()) -> Incoming:
    return Incoming(key=KEY, author_id="U1", text=text, event_id="E1", arrival=Arrival.MENTION,
                    notes=notes)


def test_a_flood_is_cut_at_a_word_and_says_how_much_is_missing() -> None:
    flood = incoming("word " * 30_000, notes=("photo.heic: not an image the model reads",))
    text = question_text(flood)
    assert is_cut(flood)
    kept, note = text.split("\n\n[The rest of this message, ", 1)
    assert MAX_QUESTION_CHARS - 200 <= len(kept) <= MAX_QUESTION_CHARS
    assert kept.endswith("word")
    assert note.startswith(f"{150_000 - len(kept):,} more characters, was cut")
    assert text.endswith("[photo.heic: not an image the model reads]")


def test_a_question_at_the_limit_is_kept_whole() -> None:
    exact = incoming("a" * MAX_QUESTION_CHARS)
    assert not is_cut(exact) and question_text(exact) == exact.text
