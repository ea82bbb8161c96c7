import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.streaming import TYPING_MARKER, LiveReply, open_fence, split_pages, utf8_size

prose = st.lists(
    st.sampled_from(["word ", "other", ". ", "\n", "\n\n", "`x`", "\n```\n", "\n```python\n"]),
    max_size=600,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=prose, limit=st.integers(min_value=60, max_value=400))
def test_pages_join_to_the_text_and_fit_the_limit(text: str, limit: int) -> None:
    pages = split_pages(text, limit, reserve=len(TYPING_MARKER))
    assert "".join(p.body for p in pages) == text
    assert all(len(p.text) + len(TYPING_MARKER) <= limit for p in pages)


@settings(max_examples=200, deadline=None)
@given(text=prose, limit=st.integers(min_value=60, max_value=400))
def test_code_fences_are_balanced_on_every_page(text: str, limit: int) -> None:
    pages = split_pages(text, limit)
    for page in pages[:-1]:
        assert open_fence(page.text) is None


@settings(max_examples=200, deadline=None)
@given(
    deltas=st.lists(st.sampled_from(["word ", "x", ". ", "\n", "\n\n", "```\n", "é"]),
                    min_size=1, max_size=150),
    takes=st.lists(st.booleans(), min_size=150, max_size=150),
)
def test_updates_never_go_backwards(deltas: list[str], takes: list[bool]) -> None:
    live = LiveReply(limit=80)
    shown: list[str] = []
    for i, delta in enumerate(deltas):
        live.feed(delta)
        if takes[i] and live.has_news():
            pages = live.take(float(i)).pages
            assert pages[-1].endswith(TYPING_MARKER)
            shown.append(visible_text(pages[:-1] + (pages[-1][: -len(TYPING_MARKER)],)))
    final = live.final()
    seen = shown + [visible_text(final.pages)]
    # What the user sees only ever grows: each update's pages extend the previous ones.
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:], strict=False))
    assert final.text == "".join(deltas)


def visible_text(pages: tuple[str, ...]) -> str:
    """The pages joined without the fence lines splitting adds, ignoring whitespace."""
    out = ""
    for i, page in enumerate(pages):
        if i > 0 and open_fence(out) is not None:
            page = page.split("\n", 1)[1]  # the reopened fence line
        closed = page.endswith("\n```") and open_fence(out + page[:-4]) is not None
        if i < len(pages) - 1 and closed:
            page = page[:-4]
        out += page
    return re.sub(r"\s+", "", out)


def test_first_text_is_due_at_once_then_once_per_interval() -> None:
    live = LiveReply(limit=2000)
    assert live.due_at(1.0) is None  # nothing to show yet
    live.feed("Hello")
    assert live.due_at(1.0) == float("-inf")
    snap = live.take(10.0)
    assert snap.pages == ("Hello" + TYPING_MARKER,)
    live.feed(" world")
    assert live.due_at(1.0) == 11.0
    assert live.take(11.0).text == "Hello world"
    assert live.due_at(1.0) is None


def test_final_has_no_marker_and_note_is_appended() -> None:
    live = LiveReply(limit=2000)
    live.feed("Answer")
    final = live.final("\n\n_(cut)_")
    assert final.final and final.pages == ("Answer\n\n_(cut)_",)
    assert TYPING_MARKER not in "".join(final.pages)


def test_long_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "```python\n" + "".join(f"print({i})\n" for i in range(300)) + "```\n\nDone."
    pages = split_pages(code, 500)
    assert len(pages) > 2
    assert pages[0].text.endswith("\n```")
    assert pages[1].text.startswith("```python\n")
    assert pages[-1].text.endswith("Done.")


def test_split_prefers_paragraphs_then_sentences() -> None:
    text = ("First paragraph. " * 5).strip() + "\n\n" + "Second one is here. " * 20
    pages = split_pages(text, 200)
    assert pages[0].body.endswith("\n\n")
    assert pages[1].body.rstrip().endswith(".")


def test_render_is_applied_before_splitting() -> None:
    live = LiveReply(limit=100, render=str.upper)
    live.feed("quiet")
    assert live.take(0.0).pages[0].startswith("QUIET")


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["é", "日本語 ", "word ", "\n", "```\n", "🙂"]), max_size=500
    ).map("".join),
    limit=st.integers(min_value=64, max_value=300),
)
def test_pages_can_be_measured_in_utf8_bytes(text: str, limit: int) -> None:
    pages = split_pages(text, limit, reserve=utf8_size(TYPING_MARKER), size=utf8_size)
    assert "".join(p.body for p in pages) == text
    assert all(utf8_size(p.text) + utf8_size(TYPING_MARKER) <= limit for p in pages)


def test_retract_makes_the_text_news_again() -> None:
    live = LiveReply(limit=2000)
    live.feed("Hello")
    live.take(1.0)
    live.feed(" there")
    live.take(2.0)
    live.retract()
    assert live.has_news()
    assert live.due_at(5.0) == 6.0  # measured from the take that did land
