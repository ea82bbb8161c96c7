"""`supportbot eval answers`: replay a question set through the whole answer pipeline —
retrieval and its "I don't know" gate, the bot's prompt, the model — and judge the answers.

By default the model calls go as one Message Batch (batches.py) at half the price of the
same requests one by one; `--no-batch` asks them one by one, which works on every provider.
Each question is reported as answered, "I don't know" (the gate declined it, or the model
said the docs do not answer it) or handed over (the model asked for a person), with whether
an expected document was cited, which key phrases the answer holds, tokens and cost.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.batches import BatchResult, BatchStatus, MessageBatches, chunks
from bot.citations import cited
from bot.conversation import Passage, Platform, StreamEnd, Turn, Usage
from bot.dont_know import MarkerWatch, marked
from bot.errors import AuthenticationError, LLMError
from bot.kb_eval import PROMPT_PASSAGES, EvalQuestion
from bot.knowledge import Knowledge
from bot.llm import ClaudeClient, request_body, usage_fields
from bot.models import BATCH_DISCOUNT, cost_usd, profile
from bot.prompts import PromptBook, build_prompt

ONE_BY_ONE = 4  # questions asked at once with --no-batch


@dataclass
class Judged:
    """One question's answer and what it shows."""

    question: str
    outcome: str  # answered / dont_know / handed_over / failed
    answerable: bool
    declined_by: str  # "gate" or "model" for dont_know, else ""
    cited_expected: bool | None  # None: the question expects no document
    phrases_found: list[str] = field(default_factory=list)
    phrases_missing: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str = ""
    answer: str = ""


@dataclass
class AnswersReport:
    mode: str  # "batch" or "one by one"
    model: str
    questions: list[Judged]
    totals: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Asked:
    """A question ready for the model: its passages and the request body."""

    index: int
    question: EvalQuestion
    passages: list[Passage]
    body: dict[str, Any]


async def prepare(knowledge: Knowledge, book: PromptBook, questions: Sequence[EvalQuestion],
                  client: ClaudeClient, max_tokens: int
                  ) -> tuple[list[Asked], dict[int, Judged]]:
    """Search each question as the bot does; the gated ones are judged at once (the bot says
    it does not know without asking the model), the others become requests."""
    asked: list[Asked] = []
    gated: dict[int, Judged] = {}
    for index, question in enumerate(questions):
        found = await knowledge.search(question.question, PROMPT_PASSAGES)
        if not found:
            gated[index] = Judged(question.question, "dont_know", question.answerable, "gate",
                                  None if not question.expected else False,
                                  phrases_missing=list(question.key_phrases))
            continue
        prompt = build_prompt(book, Platform.CONSOLE, found,
                              [Turn("user", question.question, 0)], max_tokens)
        asked.append(Asked(index, question, found,
                           request_body(prompt, client.options.model, client.options)))
    return asked, gated


def judge(item: Asked, text: str, usage: Usage, model: str, factor: float) -> Judged:
    """What an answer shows: its outcome (as the bot would take it), citations, key phrases,
    tokens and cost (`factor`: the price's, 0.5 in a batch)."""
    question = item.question
    watch = MarkerWatch()
    watch.feed(text)
    watch.flush()
    outcome = {"wants_person": "handed_over", "declined": "dont_know"}.get(
        marked(watch, text), "answered")
    _, used = cited(text, len(item.passages))
    sources = {item.passages[n - 1].source for n in used}
    lowered = text.lower()
    found = [p for p in question.key_phrases if p.lower() in lowered]
    cost = cost_usd(usage, profile(model), factor) or 0.0
    return Judged(question.question, outcome, question.answerable,
                  "model" if outcome == "dont_know" else "",
                  bool(sources & set(question.expected)) if question.expected else None,
                  found, [p for p in question.key_phrases if p not in found],
                  usage.input_tokens + usage.cache_read_input_tokens
                  + usage.cache_creation_input_tokens, usage.output_tokens, round(cost, 8),
                  answer=text)


def failed(item: Asked, why: str) -> Judged:
    return Judged(item.question.question, "failed", item.question.answerable, "", None,
                  error=why)


async def by_batch(batches: MessageBatches, asked: Sequence[Asked],
                   progress: Callable[[BatchStatus], None] | None = None,
                   first_poll: float = 5.0) -> dict[int, Judged]:
    """Every request in as few batches as the limits allow; judged from the results."""
    judged: dict[int, Judged] = {}
    by_id = {f"q{item.index:06d}": item for item in asked}
    for batch in chunks([(cid, item.body) for cid, item in by_id.items()]):
        status = await batches.create(batch)
        try:
            status = await batches.wait(status.id, progress, first_poll=first_poll)
        except asyncio.CancelledError:  # Ctrl-C: stop the batch rather than pay for it
            await asyncio.shield(_cancel(batches, status.id))
            raise
        for result in await batches.results(status):
            item = by_id.get(result.custom_id)
            if item is not None:
                judged[item.index] = _from_result(item, result)
    return judged


async def _cancel(batches: MessageBatches, batch_id: str) -> None:
    try:
        await batches.cancel(batch_id)
        print(f"\nbatch {batch_id} cancelled", file=sys.stderr)
    except LLMError as error:
        print(f"\nbatch {batch_id} could not be cancelled ({error}); it may still run and "
              "be billed", file=sys.stderr)


def _from_result(item: Asked, result: BatchResult) -> Judged:
    if result.kind != "succeeded":
        return failed(item, result.error or result.kind)
    message = result.message
    text = "".join(block.get("text", "") for block in message.get("content", [])
                   if block.get("type") == "text")
    usage = Usage(**usage_fields(message.get("usage", {})))
    return judge(item, text, usage, str(message.get("model") or item.body["model"]),
                 BATCH_DISCOUNT)


async def one_by_one(client: ClaudeClient, asked: Sequence[Asked]) -> dict[int, Judged]:
    """The same requests streamed one at a time (a few at once), at the single price."""
    judged: dict[int, Judged] = {}
    gate = asyncio.Semaphore(ONE_BY_ONE)

    async def ask(item: Asked) -> None:
        async with gate:
            text, end = "", None
            try:
                async for piece in client.stream_body(item.body):
                    if isinstance(piece, StreamEnd):
                        end = piece
                    else:
                        text += piece
            except AuthenticationError:
                raise  # every other question would fail the same way
            except Exception as error:  # one failed question never stops the report
                judged[item.index] = failed(item, str(error))
                return
            assert end is not None
            judged[item.index] = judge(item, text, end.usage, end.model, end.price_factor)

    await asyncio.gather(*(ask(item) for item in asked))
    return judged


def report(mode: str, model: str, questions: Sequence[EvalQuestion],
           judged: dict[int, Judged]) -> AnswersReport:
    items = [judged[i] for i in range(len(questions))]
    counts = {kind: sum(1 for j in items if j.outcome == kind)
              for kind in ("answered", "dont_know", "handed_over", "failed")}
    expecting = [j for j in items if j.cited_expected is not None and j.outcome == "answered"]
    phrases = sum(len(j.phrases_found) + len(j.phrases_missing) for j in items)
    unanswerable = [j for j in items if not j.answerable]
    totals = {
        **counts,
        "cited_expected": sum(1 for j in expecting if j.cited_expected),
        "answered_with_expected_docs": len(expecting),
        "key_phrases_found": sum(len(j.phrases_found) for j in items),
        "key_phrases": phrases,
        "unanswerable_declined": sum(1 for j in unanswerable if j.outcome == "dont_know"),
        "declined_by_gate": sum(1 for j in items if j.declined_by == "gate"),
        "unanswerable": len(unanswerable),
        "input_tokens": sum(j.input_tokens for j in items),
        "output_tokens": sum(j.output_tokens for j in items),
        "cost_usd": round(sum(j.cost_usd for j in items), 6),
    }
    return AnswersReport(mode, model, items, totals)


def as_json(result: AnswersReport) -> str:
    return json.dumps(asdict(result), indent=2)


def as_text(result: AnswersReport) -> str:
    t = result.totals
    lines = [f"{len(result.questions)} questions, {result.mode}, {result.model}"]
    for number, item in enumerate(result.questions, start=1):
        cite = {True: "cited", False: "not cited", None: "-"}[item.cited_expected]
        keys = (f", key phrases {len(item.phrases_found)}/"
                f"{len(item.phrases_found) + len(item.phrases_missing)}"
                if item.phrases_found or item.phrases_missing else "")
        why = f" ({item.error})" if item.error else ""
        outcome = f"{item.outcome} ({item.declined_by})" if item.declined_by else item.outcome
        lines.append(f"{number:3}. {outcome:17} {cite:9}{keys}  {item.question[:70]}{why}")
    lines += [
        "",
        f"answered {t['answered']}, I don't know {t['dont_know']} (the search's gate "
        f"{t['declined_by_gate']}), handed over "
        f"{t['handed_over']}, failed {t['failed']}",
        f"expected source cited in {t['cited_expected']} of {t['answered_with_expected_docs']}"
        f" answers; key phrases {t['key_phrases_found']}/{t['key_phrases']}; unanswerable "
        f"declined {t['unanswerable_declined']}/{t['unanswerable']}",
        f"tokens in {t['input_tokens']:,}, out {t['output_tokens']:,}; cost "
        f"${t['cost_usd']:.6f}" + (" (batch price: half the single price)"
                                  if result.mode == "batch" else ""),
    ]
    return "\n".join(lines)
