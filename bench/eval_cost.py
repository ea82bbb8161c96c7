"""What replaying an evaluation set costs with and without the Message Batches API.

    python -m bench.eval_cost            # 200 questions, 3 runs, medians
    python -m bench.eval_cost --runs 1

The questions are the Starlette set's (evals/starlette), cycled to 200, asked over its pinned
docs (downloaded as bench/kb.py does) through `eval answers`' pipeline: retrieval and its
gate, the bot's prompt, the model. Both modes run side by side in one process against the
local fake Anthropic server: one Message Batch, and one by one (four at a time). Cost is
priced by bot/models.py from the token usage the fake reports for each request, at the
single and at the batch rate; wall time is measured on the fake, whose batch ends after
`--batch-seconds` (a real batch takes minutes to hours: the saving is in money, not time).
Writes bench/results/eval_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, write_result
from bench.kb import ROOT, SETS, docs_of
from bot.batches import MessageBatches
from bot.eval_answers import by_batch, one_by_one, prepare, report
from bot.kb_eval import load_questions
from bot.knowledge import Knowledge
from bot.llm import ClaudeClient, ModelOptions
from bot.prompts import PromptBook
from bot.providers import AnthropicAPI
from bot.store import Store
from tests.fakes.anthropic import FakeAnthropic

QUESTIONS = 200


async def one_run(knowledge: Knowledge, batch_seconds: float) -> dict[str, float]:
    pin = next(p for p in SETS if p.name == "starlette")
    base = load_questions(ROOT / "evals" / pin.name / "questions.jsonl")
    questions = [base[i % len(base)] for i in range(QUESTIONS)]
    figures: dict[str, float] = {}
    async with FakeAnthropic(default_words=120, delta_interval=0.002) as fake:
        fake.batches.processing_seconds = batch_seconds
        options = ModelOptions("claude-haiku-5-5", None, 0.3, "low")
        client = ClaudeClient(AnthropicAPI("test-key", fake.base_url), options)
        try:
            asked, gated = await prepare(knowledge, PromptBook.load(None), questions, client,
                                         1024)
            for mode in ("batch", "one by one"):
                fake.reset()  # the same cold prompt cache for both
                started = time.perf_counter()
                if mode == "batch":
                    batches = MessageBatches(client.provider)
                    try:
                        judged = await by_batch(batches, asked, None, first_poll=0.1)
                    finally:
                        await batches.aclose()
                else:
                    judged = await one_by_one(client, asked)
                wall = time.perf_counter() - started
                totals = report(mode, options.model, questions, {**gated, **judged}).totals
                key = "batch" if mode == "batch" else "single"
                figures[f"{key}_cost_usd"] = totals["cost_usd"]
                figures[f"{key}_input_tokens"] = totals["input_tokens"]
                figures[f"{key}_output_tokens"] = totals["output_tokens"]
                figures[f"{key}_wall_s"] = round(wall, 2)
                figures[f"{key}_failed"] = totals["failed"]
            figures["asked"] = len(asked)
            figures["gated"] = len(gated)
        finally:
            await client.aclose()
    figures["saving"] = round(1 - figures["batch_cost_usd"] / figures["single_cost_usd"], 4)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-seconds", type=float, default=2.0)
    args = parser.parse_args()
    pin = next(p for p in SETS if p.name == "starlette")
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "kb.db")
        try:
            knowledge = Knowledge(store.sqlite)
            await knowledge.index_folder(docs_of(pin))
            for _ in range(args.runs):
                runs.append(await one_run(knowledge, args.batch_seconds))
        finally:
            await store.close()
    result: dict[str, Any] = {"questions": QUESTIONS, "runs": args.runs,
                              "batch_processing_s_on_fake": args.batch_seconds}
    for name in runs[0]:
        result[name] = round(median([r[name] for r in runs]), 6)
    print(f"{QUESTIONS} questions ({int(result['asked'])} asked, {int(result['gated'])} "
          f"declined by the gate), median of {args.runs} runs:")
    print(f"  one by one : ${result['single_cost_usd']:.4f}  "
          f"({int(result['single_input_tokens']):,} in, {int(result['single_output_tokens']):,}"
          f" out)  wall {result['single_wall_s']} s")
    print(f"  one batch  : ${result['batch_cost_usd']:.4f}  "
          f"({int(result['batch_input_tokens']):,} in, {int(result['batch_output_tokens']):,}"
          f" out)  wall {result['batch_wall_s']} s")
    print(f"  saving     : {result['saving'] * 100:.1f} % (target 50 %)")
    write_result("eval_cost", result)


if __name__ == "__main__":
    asyncio.run(main())
