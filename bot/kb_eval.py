"""`supportbot kb eval`: how well search finds the page that answers, beside a plain baseline.

A question set is JSON lines: {"question", "expected": [doc paths relative to the source],
"section": heading (optional), "answerable": true by default}. The baseline is what a team
could write in an afternoon, run in the same process on the same files: each file split at
its `#` heading lines (reStructuredText at its underlined titles), one SQLite FTS5 row per section
with its heading path written before the text, default tokenizer, the question's words
OR-ed, ranked by plain BM25. A site source, whose files are not on disk, enters the baseline
with supportbot's own sections.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.conversation import Passage, Platform, Turn
from bot.docs_parse import PATH_SEPARATOR
from bot.dont_know import MarkerWatch, Verdict
from bot.knowledge import Knowledge, doc_files
from bot.model_client import ModelClient
from bot.policy import ReplyPolicy
from bot.prompts import PromptBook, build_prompt
from bot.retrieval import fts_query, terms
from bot.stats import nearest_rank

KS = (1, 3, 5)
DEPTH = 10  # results looked at for MRR
READERS = 4  # questions asked of the model at once by --answers
PROMPT_PASSAGES = ReplyPolicy.passages  # as many as the bot sends with a question

# Asks the model one question with these passages, as the bot would; True when it says the
# passages do not answer (its "not in the docs" marker).
Reader = Callable[[str, Sequence[Passage]], Awaitable[bool]]


class EvalError(ValueError):
    """The question file is not what `kb eval` reads; the message names the line."""


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    expected: tuple[str, ...]
    section: str | None
    answerable: bool
    key_phrases: tuple[str, ...] = ()  # words a good answer holds (`eval answers`)


@dataclass
class Figures:
    """One system's figures over a question set."""

    hit: dict[int, float] = field(default_factory=dict)
    section_hit: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0


@dataclass
class Report:
    questions: int
    answerable: int
    ours: Figures
    baseline: Figures
    gate_precision: float  # of the questions it declined, the share the docs cannot answer
    gate_recall: float  # of the questions the docs cannot answer, the share it declined
    declined_answerable: float  # share of answerable questions it wrongly declined
    misses: list[str] = field(default_factory=list)  # answerable questions with no hit@5
    model: DontKnow | None = None  # with --answers: the gate and the model's marker together


@dataclass
class DontKnow:
    """The whole "I don't know" path: the gate, then the model on what passed it."""

    asked: int  # questions that passed the gate and went to the model
    model_declined: int  # of those, how many the model marked as not in the docs
    recall: float  # unanswerable questions declined by the gate or the model
    declined_answerable: float  # answerable ones declined by either


def load_questions(path: Path) -> list[EvalQuestion]:
    """The question set; an EvalError naming the file and line for anything it cannot use."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvalError(f"{path}: cannot read it as UTF-8 text ({type(error).__name__})") from None
    questions = [_question(path, number, line)
                 for number, line in enumerate(lines, start=1) if line.strip()]
    if not questions:
        raise EvalError(f"{path}: no questions")
    return questions


def _question(path: Path, number: int, line: str) -> EvalQuestion:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise EvalError(f"{where}: not a JSON object") from None
    if not isinstance(data, dict):
        raise EvalError(f"{where}: expected a JSON object, got {type(data).__name__}")
    question, expected = data.get("question"), data.get("expected", [])
    answerable, section = data.get("answerable", True), data.get("section")
    if not isinstance(question, str) or not question.strip():
        raise EvalError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(expected, list) or not all(isinstance(p, str) for p in expected):
        raise EvalError(f"{where}: 'expected' must be a list of doc paths (strings)")
    if not isinstance(answerable, bool):
        raise EvalError(f"{where}: 'answerable' must be true or false")
    if section is not None and not isinstance(section, str):
        raise EvalError(f"{where}: 'section' must be a heading (a string)")
    if answerable and not expected:
        raise EvalError(f"{where}: an answerable question needs 'expected' paths")
    phrases = data.get("key_phrases", [])
    if not isinstance(phrases, list) or not all(isinstance(p, str) and p for p in phrases):
        raise EvalError(f"{where}: 'key_phrases' must be a list of words or phrases")
    return EvalQuestion(question.strip(), tuple(p.removeprefix("./") for p in expected),
                        section, answerable, tuple(phrases))


def unknown_paths(questions: Sequence[EvalQuestion], documents: set[str]) -> list[str]:
    """Expected paths that name no indexed document (a typo, or a path not relative to the
    source's root): their questions can never score."""
    return sorted({p for q in questions for p in q.expected if p not in documents})


def unknown_sections(
    questions: Sequence[EvalQuestion], headings: Sequence[tuple[str, str]]
) -> list[str]:
    """Sections that no heading of their expected documents has (a misspelling counts
    every question as a miss at section level); `headings`: (document, heading path)."""
    have: dict[str, set[str]] = {}
    for document, heading in headings:
        have.setdefault(document, set()).update(
            _norm(h) for h in heading.split(PATH_SEPARATOR))
    return [q.section for q in questions if q.section and q.answerable and not any(
        _norm(q.section) in have.get(path, set()) for path in q.expected)]


def _norm(text: str) -> str:
    return " ".join(text.replace("`", "").replace("*", "").replace("_", "").lower().split())


def rank_of(passages: Sequence[Passage], want: EvalQuestion, section: bool) -> int | None:
    """1-based rank of the first passage from an expected document (and section)."""
    for rank, passage in enumerate(passages, start=1):
        if passage.source not in want.expected:
            continue
        if not section:
            return rank
        headings = [_norm(h) for h in passage.heading.split(PATH_SEPARATOR)]
        if want.section and _norm(want.section) in headings:
            return rank
    return None


def figures(ranked: Sequence[Sequence[Passage]], questions: Sequence[EvalQuestion],
            latencies: Sequence[float]) -> Figures:
    pairs = [(p, q) for p, q in zip(ranked, questions, strict=True) if q.answerable]
    with_section = [(p, q) for p, q in pairs if q.section]
    out = Figures()
    doc_ranks = [rank_of(p, q, False) for p, q in pairs]  # once per question, for every k
    section_ranks = [rank_of(p, q, True) for p, q in with_section]
    for k in KS:
        out.hit[k] = _share(doc_ranks, k)
        out.section_hit[k] = _share(section_ranks, k)
    out.mrr = statistics.fmean(1 / r if r else 0.0 for r in doc_ranks) if doc_ranks else 0.0
    p50, p95 = nearest_rank(latencies, 50), nearest_rank(latencies, 95)
    if p50 is not None and p95 is not None:
        out.latency_p50_ms, out.latency_p95_ms = round(p50 * 1000, 2), round(p95 * 1000, 2)
    return out


def _share(ranks: Sequence[int | None], k: int) -> float:
    """The share of questions found within the first `k` results."""
    if not ranks:
        return 0.0
    return round(sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks), 3)


async def evaluate(knowledge: Knowledge, questions: Sequence[EvalQuestion],
                   reader: Reader | None = None) -> Report:
    """Both systems over the question set, in this process, one after the other; with a
    reader, the questions the gate lets through are then put to the model."""
    ours: list[list[Passage]] = []
    confident: list[bool] = []
    timings: list[float] = []
    for question in questions:
        started = time.perf_counter()
        found = await knowledge.rank(question.question, DEPTH)
        timings.append(time.perf_counter() - started)
        ours.append(found.passages)
        confident.append(found.confident)
    baseline = await Baseline.build(knowledge)
    plain: list[list[Passage]] = []
    plain_timings: list[float] = []
    for question in questions:
        started = time.perf_counter()
        plain.append(baseline.search(question.question, DEPTH))
        plain_timings.append(time.perf_counter() - started)
    baseline.close()
    unanswerable = [not q.answerable for q in questions]
    declined = [not c for c in confident]
    model = None
    if reader is not None:
        model = await _dont_know(reader, questions, ours, declined)
    return Report(
        questions=len(questions),
        answerable=len(questions) - sum(unanswerable),
        ours=figures(ours, questions, timings),
        baseline=figures(plain, questions, plain_timings),
        gate_precision=_share_of(unanswerable, declined),
        gate_recall=_share_of(declined, unanswerable),
        declined_answerable=_share_of(declined, [not u for u in unanswerable]),
        misses=[q.question for p, q in zip(ours, questions, strict=True)
                if q.answerable and (rank_of(p, q, False) or 99) > 5],
        model=model,
    )


async def _dont_know(reader: Reader, questions: Sequence[EvalQuestion],
                     passages: Sequence[Sequence[Passage]], gated: Sequence[bool]) -> DontKnow:
    """Each question the gate let through, asked of the model with the passages the bot
    would send (a few at a time), and the declines of both counted together."""
    limit = asyncio.Semaphore(READERS)
    declined = [True] * len(questions)

    async def read(index: int) -> None:
        async with limit:
            declined[index] = await reader(questions[index].question,
                                           passages[index][:PROMPT_PASSAGES])

    # A task group: when one request fails, the others are cancelled, not left running,
    # and the caller sees that first failure (the model's error), not a group of them.
    try:
        async with asyncio.TaskGroup() as group:
            for index, was_gated in enumerate(gated):
                if not was_gated:
                    group.create_task(read(index))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None
    unanswerable = [not q.answerable for q in questions]
    return DontKnow(
        asked=sum(1 for g in gated if not g),
        model_declined=sum(1 for d, g in zip(declined, gated, strict=True) if d and not g),
        recall=_share_of(declined, unanswerable),
        declined_answerable=_share_of(declined, [not u for u in unanswerable]),
    )


def model_reader(llm: ModelClient, book: PromptBook, max_tokens: int) -> Reader:
    """Asks as the bot does (its system prompt, the numbered passages, the question) and
    stops reading as soon as the start of the answer shows whether it is the marker."""

    async def read(question: str, passages: Sequence[Passage]) -> bool:
        prompt = build_prompt(book, Platform.CONSOLE, passages,
                              [Turn("user", question, 0)], max_tokens)
        watch = MarkerWatch()
        stream = llm.stream(prompt)
        try:
            async for item in stream:
                if isinstance(item, str):
                    watch.feed(item)
                    if watch.verdict is not Verdict.UNDECIDED:
                        break
        finally:
            await stream.aclose()
        watch.flush()
        return watch.declined

    return read


def _share_of(flags: Sequence[bool], among: Sequence[bool]) -> float:
    """Of the items marked in `among`, the share also marked in `flags` (0 when none)."""
    total = sum(among)
    hits = sum(1 for f, a in zip(flags, among, strict=True) if f and a)
    return round(hits / total, 3) if total else 0.0


class Baseline:
    """Plain BM25, one row per section, in a throwaway in-memory database."""

    def __init__(self, sections: Sequence[tuple[str, str, str]]) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE s USING fts5(path UNINDEXED, heading UNINDEXED,"
                        " body)")
        self.db.executemany("INSERT INTO s (path, heading, body) VALUES (?, ?, ?)",
                            [(p, h, f"{h}\n{t}") for p, h, t in sections])

    @classmethod
    async def build(cls, knowledge: Knowledge) -> Baseline:
        rows: list[tuple[str, str, str]] = []
        sources = await knowledge.sources()
        for source in sources:
            if source.kind == "folder":
                rows.extend(afternoon_sections(Path(source.id)))
        if any(source.kind != "folder" for source in sources):
            folders = {row[0] for row in rows}
            rows.extend(r for r in await knowledge.sections() if r[0] not in folders)
        return cls(rows)

    def search(self, question: str, limit: int) -> list[Passage]:
        query = fts_query(terms(question))
        if not query:
            return []
        rows = self.db.execute(
            "SELECT path, heading, body FROM s WHERE s MATCH ? ORDER BY rank LIMIT ?",
            [query, limit],
        ).fetchall()
        return [Passage(source=r[0], heading=r[1], text=r[2]) for r in rows]

    def close(self) -> None:
        self.db.close()


_HEADING_LINE = re.compile(r"^(#{1,6})\s+(.*)$")
# docutils takes any of these repeated as a title's underline (or overline)
_UNDERLINE = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")


def afternoon_sections(folder: Path) -> list[tuple[str, str, str]]:
    """The baseline's sections: Markdown split at every line that starts with `#` (a first
    try cannot tell a heading from a comment in a code block) and reStructuredText at every
    line underlined with punctuation, its level by the order its style first appears."""
    rows: list[tuple[str, str, str]] = []
    for file in doc_files(folder):
        name = file.relative_to(folder).as_posix()
        text = file.read_text(errors="replace")
        if file.suffix.lower() in (".html", ".htm"):
            text = re.sub(r"<[^>]+>", " ", text)
        rst = file.suffix.lower() == ".rst"
        rows.extend((name, heading, body) for heading, body in
                    (_rst_sections if rst else _markdown_sections)(text, file.stem))
    return rows


def _markdown_sections(text: str, stem: str) -> list[tuple[str, str]]:
    titles: list[tuple[int, str] | None] = []
    for line in text.splitlines():
        match = _HEADING_LINE.match(line)
        titles.append((len(match.group(1)), match.group(2)) if match else None)
    return _split(text.splitlines(), titles, stem)


def _rst_sections(text: str, stem: str) -> list[tuple[str, str]]:
    lines = text.splitlines()
    titles: list[tuple[int, str] | None] = [None] * len(lines)
    styles: list[tuple[str, bool]] = []
    skip: set[int] = set()
    for i in range(len(lines) - 1):
        title, under = lines[i].strip(), _UNDERLINE.match(lines[i + 1])
        length = len(lines[i + 1].rstrip())
        # docutils accepts an underline shorter than its title from four characters on
        if not title or not under or _UNDERLINE.match(lines[i]) or i in skip \
                or length < min(len(title), 4):
            continue
        over = i > 0 and i - 1 not in skip and lines[i - 1].rstrip() == lines[i + 1].rstrip()
        style = (under.group(1), over)
        if style not in styles:
            styles.append(style)
        titles[i] = (styles.index(style) + 1, title)
        skip.update({i - 1, i + 1} if over else {i + 1})
    kept = [(line, t) for n, (line, t) in enumerate(zip(lines, titles, strict=True))
            if n not in skip]
    return _split([line for line, _ in kept], [t for _, t in kept], stem)


def _split(lines: Sequence[str], titles: Sequence[tuple[int, str] | None],
           stem: str) -> list[tuple[str, str]]:
    """(heading path, text) of each run of lines between titles (level, title)."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    for line, title in [*zip(lines, titles, strict=True), ("", (1, ""))]:
        if title is None:
            body.append(line)
            continue
        heading = PATH_SEPARATOR.join(t for _, t in stack) or stem
        if "".join(body).strip():
            out.append((heading, "\n".join(body)))
        body = []
        level = title[0]
        stack = [(lv, t) for lv, t in stack if lv < level] + [title]
    return out


def as_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2)


def as_text(report: Report) -> str:
    noun = "question" if report.questions == 1 else "questions"
    lines = [f"{report.questions} {noun} ({report.answerable} answerable)", "",
             f"{'':24}{'supportbot':>12}{'baseline':>12}"]
    for label, ours, base in _rows(report):
        lines.append(f"{label:24}{ours:>12}{base:>12}")
    unanswerable = report.questions - report.answerable
    if unanswerable:
        lines += ["", f"don't-know gate on the {unanswerable} unanswerable:"
                  f" precision {report.gate_precision:.2f}, recall {report.gate_recall:.2f};"
                  f" answerable ones declined: {report.declined_answerable:.2f}"]
    else:
        lines += ["", "don't-know gate: no unanswerable questions to measure it on "
                  "(add some with \"answerable\": false); answerable ones declined: "
                  f"{report.declined_answerable:.2f}"]
    if report.model is not None:
        model = report.model
        recall = f"recall {model.recall:.2f}; " if unanswerable else ""
        lines += [f"with the model ({model.asked} asked, {model.model_declined} marked not in"
                  f" the docs): {recall}answerable ones declined: "
                  f"{model.declined_answerable:.2f}"]
    if report.misses:
        lines += ["", "answerable, not in the top 5:", *(f"  - {q}" for q in report.misses)]
    return "\n".join(lines)


def _rows(report: Report) -> list[tuple[str, str, str]]:
    ours, base = report.ours, report.baseline
    rows = [(f"hit@{k}", f"{ours.hit[k]:.2f}", f"{base.hit[k]:.2f}") for k in KS]
    rows += [(f"section hit@{k}", f"{ours.section_hit[k]:.2f}", f"{base.section_hit[k]:.2f}")
             for k in KS]
    rows.append(("MRR", f"{ours.mrr:.2f}", f"{base.mrr:.2f}"))
    rows.append(("search p50 / p95 (ms)", f"{ours.latency_p50_ms:g} / {ours.latency_p95_ms:g}",
                 f"{base.latency_p50_ms:g} / {base.latency_p95_ms:g}"))
    return rows
