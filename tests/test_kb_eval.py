"""`kb eval`'s question files: every line either a usable question or a clear error naming
the line, and the figures computed from what search returned."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.conversation import Passage
from bot.kb_eval import (
    EvalError,
    EvalQuestion,
    afternoon_sections,
    figures,
    load_questions,
    unknown_paths,
    unknown_sections,
)


@pytest.mark.parametrize(("line", "message"), [
    ("[1, 2, 3]", "expected a JSON object, got list"),
    ('{"question": 42, "expected": ["a.md"]}', "'question' must be a non-empty string"),
    ('{"question": "", "expected": ["a.md"]}', "'question' must be a non-empty string"),
    ('{"expected": ["a.md"]}', "'question' must be a non-empty string"),
    ('{"question": "q", "expected": "a.md"}', "'expected' must be a list of doc paths"),
    ('{"question": "q", "expected": ["a.md"], "answerable": "maybe"}', "true or false"),
    ('{"question": "q", "expected": ["a.md"], "section": 5}', "'section' must be a heading"),
    ('{"question": "q"}', "an answerable question needs 'expected' paths"),
    ("not json", "not a JSON object"),
])
def test_a_bad_line_is_named_with_what_is_wrong(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine", "expected": ["a.md"]}\n' + line + "\n")
    with pytest.raises(EvalError, match=f"q.jsonl:2: .*{message}"):
        load_questions(path)


def test_unreadable_and_missing_files_are_named(tmp_path: Path) -> None:
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xe1\xff\x00\x81")
    with pytest.raises(EvalError, match="bin.jsonl: cannot read it as UTF-8"):
        load_questions(binary)
    with pytest.raises(EvalError, match="nothere.jsonl: no such file"):
        load_questions(tmp_path / "nothere.jsonl")


def test_paths_that_name_no_document_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q", "expected": ["./guide/a.md", "docs/b.md"]}\n')
    [question] = load_questions(path)
    assert question.expected == ("guide/a.md", "docs/b.md")  # "./" is the same file
    assert unknown_paths([question], {"guide/a.md", "b.md"}) == ["docs/b.md"]


def test_figures_count_hits_by_rank_and_section() -> None:
    q = EvalQuestion("q", ("a.md",), "Install", True)
    found = [Passage("b.md", "B", "x"), Passage("a.md", "A › Usage", "y"),
             Passage("a.md", "A › Install", "z")]
    result = figures([found], [q], [0.001])
    assert (result.hit[1], result.hit[3], result.section_hit[1], result.section_hit[3]) == (
        0.0, 1.0, 0.0, 1.0)
    assert result.mrr == 0.5


def test_every_shipped_set_is_complete_and_pinned() -> None:
    from bench.kb import ROOT, SETS

    assert {pin.name for pin in SETS} == {p.name for p in (ROOT / "evals").iterdir() if p.is_dir()}
    for pin in SETS:
        questions = load_questions(ROOT / "evals" / pin.name / "questions.jsonl")
        answerable = [q for q in questions if q.answerable]
        assert len(answerable) >= 40 and len(questions) - len(answerable) >= 10, pin.name
        assert len({q.question for q in questions}) == len(questions), pin.name
        assert all(not q.expected for q in questions if not q.answerable), pin.name
        source = (ROOT / "evals" / pin.name / "SOURCE.md").read_text()
        assert pin.sha256 in source and pin.requirement.replace("==", "-") in source, pin.name
    # the sets the constants are chosen on; the others are held out
    assert [pin.name for pin in SETS if pin.tuned] == ["pip", "pytest"]


def test_latency_percentiles_never_cross_however_few_the_questions() -> None:
    q = EvalQuestion("q", ("a.md",), None, True)
    two = figures([[], []], [q, q], [0.001, 0.003])
    assert (two.latency_p50_ms, two.latency_p95_ms) == (1.0, 3.0)
    many = figures([[]] * 20, [q] * 20, [i / 1000 for i in range(1, 21)])
    assert (many.latency_p50_ms, many.latency_p95_ms) == (10.0, 19.0)


def test_a_section_no_expected_document_has_is_named() -> None:
    questions = [EvalQuestion("a", ("guide.md",), "`--exclude`", True),
                 EvalQuestion("b", ("guide.md",), "Instalation", True),
                 EvalQuestion("c", ("other.md", "guide.md"), "Usage", True)]
    headings = [("guide.md", "Guide › --exclude"), ("guide.md", "Guide › Installation"),
                ("guide.md", "Guide › Usage")]
    assert unknown_sections(questions, headings) == ["Instalation"]


def test_the_baseline_splits_restructuredtext_at_its_titles_too(tmp_path: Path) -> None:
    # A baseline that kept .rst files whole could never find a section there, and would
    # make any section-level gain on a Sphinx docs set look larger than it is.
    (tmp_path / "guide.rst").write_text(
        "=====\nGuide\n=====\n\nIntro text.\n\nInstall\n-------\n\npip install acme\n\n"
        "From source\n~~~~~~~~~~~\n\nbuild it\n\nConfigure\n---------\n\nedit acme.toml\n"
        "\n::\n\n    # a comment\n    ---\n")
    (tmp_path / "notes.md").write_text("# Notes\n\nhello\n\n```sh\n# not a title to us\n```\n")
    rows = afternoon_sections(tmp_path)
    assert [(p, h) for p, h, _ in rows] == [
        ("guide.rst", "Guide"),
        ("guide.rst", "Guide › Install"),
        ("guide.rst", "Guide › Install › From source"),
        ("guide.rst", "Guide › Configure"),
        ("notes.md", "Notes"),
        ("notes.md", "not a title to us"),  # the afternoon try's known blind spot
    ]
    assert "edit acme.toml" in rows[3][2] and "=====" not in rows[0][2]


def test_the_baseline_reads_rst_titles_as_docutils_does(tmp_path: Path) -> None:
    (tmp_path / "a.rst").write_text(
        "One\n---\nbody one\n\nTwo\n---\nbody two\n\nA longer title\n~~~~\nbody three\n\n"
        "Bang\n!!!!\nbody four\n")
    headings = [h for _, h, _ in afternoon_sections(tmp_path)]
    assert headings == ["One", "Two", "Two › A longer title", "Two › A longer title › Bang"]
