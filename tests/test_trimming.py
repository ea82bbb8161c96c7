from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation import Turn
from bot.models import estimate_tokens, profile
from bot.trimming import TRUNCATION_MARKER, history_budget, history_window, normalise

HAIKU = profile("claude-haiku-5-5")


def turn(role: str, text: str) -> Turn:
    return Turn(role=role, text=text, tokens=estimate_tokens(text, HAIKU))  # type: ignore[arg-type]


turns_strategy = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(min_size=1, max_size=400)),
    min_size=0,
    max_size=30,
).map(lambda pairs: [turn(r, t) for r, t in pairs] + [turn("user", "the current question")])


@settings(max_examples=300, deadline=None)
@given(turns=turns_strategy, budget=st.integers(min_value=64, max_value=3000))
def test_window_fits_budget_and_is_a_valid_sequence(turns: list[Turn], budget: int) -> None:
    window = history_window(turns, budget, HAIKU)
    assert sum(t.tokens for t in window) <= budget
    assert window[0].role == "user"
    assert all(a.role != b.role for a, b in zip(window, window[1:], strict=False))
    assert window[-1].text.endswith("the current question")


@settings(max_examples=200, deadline=None)
@given(turns=turns_strategy, budget=st.integers(min_value=64, max_value=3000))
def test_window_keeps_whole_messages_from_the_newest_end(turns: list[Turn], budget: int) -> None:
    window = history_window(turns, budget, HAIKU)
    # The window is exactly the newest turns that fit, whole, regrouped by role.
    suffix: list[Turn] = []
    for turn_ in reversed(turns):
        if sum(t.tokens for t in suffix) + turn_.tokens > budget:
            break
        suffix.insert(0, turn_)
    assert window == normalise(suffix)
    assert TRUNCATION_MARKER not in "".join(t.text for t in window)


def test_over_long_question_is_shortened_with_a_marker() -> None:
    question = turn("user", "x" * 50_000)
    turns = [turn("user", "old"), turn("assistant", "reply"), question]
    window = history_window(turns, 1000, HAIKU)
    assert len(window) == 1
    assert window[0].text.endswith(TRUNCATION_MARKER)
    assert window[0].tokens <= 1000


def test_oldest_turns_are_dropped_first() -> None:
    turns = [turn("user", f"question {i} " + "w" * 200) for i in range(10)]
    window = history_window(turns, 300, HAIKU)
    assert "question 9" in window[-1].text
    assert "question 0" not in "".join(t.text for t in window)


def test_normalise_merges_same_role_and_drops_leading_assistant() -> None:
    merged = normalise([turn("assistant", "a"), turn("user", "q1"), turn("user", "q2")])
    assert [t.role for t in merged] == ["user"]
    assert merged[0].text == "q1\n\nq2"


def test_budget_is_capped_by_context_and_long_price_threshold() -> None:
    assert history_budget(HAIKU, 20_000, 500, 1000) == 20_000
    # Haiku 5.5 bills prompts over 100K tokens at 5x: the window stays under the threshold.
    assert history_budget(HAIKU, 500_000, 500, 1000) < 100_000 - 1500
    small = profile("claude-3-haiku-20240307")
    assert history_budget(small, 500_000, 0, 0) <= 200_000 - 4096
