"""Prompt caching: the input cost of a 10-turn support thread, with and without cache
breakpoints, priced by models.py for the default model.

The bot as shipped (responder, store, knowledge base, model client) against the fake Anthropic
server, which bills cache reads and writes by the API's rules (a prefix counts only up to a
breakpoint, above the model's minimum length, within the TTL, found up to 20 blocks back).
The thread asks ten follow-up questions about a docs folder, so each turn carries the shipped
system prompt, the history so far and four passages of docs. Both variants run side by side
in one run, each on a fresh fake (an empty cache).

Run: python -m bench.caching
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.common import median, write_result
from bot.conversation import Arrival, ConversationKey, Incoming, Platform, Usage
from bot.knowledge import Knowledge
from bot.llm import AnthropicClient, ModelOptions
from bot.models import profile
from bot.policy import ReplyPolicy
from bot.prompts import PromptBook
from bot.responder import Responder
from bot.store import Store
from tests.fakes.anthropic import FakeAnthropic
from tests.surfaces import RecordingSurface

MODEL = "claude-haiku-5-5"
RUNS = 3
QUESTIONS = (
    "How do I export a report?", "Can I export it as PDF?", "And as CSV?",
    "How big can an export be?", "Can exports be scheduled every Monday?",
    "Who receives scheduled exports?", "How do I stop a schedule?",
    "Can I share a dashboard instead?", "How do I revoke a shared link?",
    "Does revoking affect scheduled exports?",
)
TOPICS = ("Exporting", "Scheduling", "Sharing", "Permissions", "Formats", "Limits")


def write_docs(folder: Path) -> None:
    """Six pages of a few sections each, about the thread's topics."""
    folder.mkdir()
    for topic in TOPICS:
        sections = [f"# {topic}\n"]
        for n in range(4):
            words = (f"{topic.lower()} export report schedule share link PDF CSV dashboard "
                     "recipient revoke limit size Monday ").split()
            body = " ".join(words[(n + i) % len(words)] for i in range(160))
            sections.append(f"## {topic} step {n}\n\n{body.capitalize()}.\n")
        (folder / f"{topic.lower()}.md").write_text("\n".join(sections))


async def thread_cost(docs: Path, caching: bool) -> dict[str, float]:
    """Input tokens and dollars of the whole thread, on a fresh fake."""
    usage = Usage()
    async with FakeAnthropic(delta_interval=0.0, default_words=180) as fake:
        with tempfile.TemporaryDirectory() as folder:
            store = await Store.open(Path(folder) / "bot.db")
            options = ModelOptions(MODEL, None, 0.3, "low", prompt_caching=caching)
            llm = AnthropicClient("test-key", fake.base_url, options)
            knowledge = Knowledge(store.sqlite)
            await knowledge.index_folder(docs)
            responder = Responder(ReplyPolicy(MODEL, 1024, 20_000, 8), store, knowledge, llm,
                                  PromptBook.load())
            key = ConversationKey(Platform.SLACK, "T1", "C1", "thread-1")
            try:
                for number, question in enumerate(QUESTIONS):
                    surface = RecordingSurface()
                    task = await responder.submit(
                        Incoming(key, "U1", question, f"E{number}", Arrival.FOLLOW_UP), surface)
                    assert task is not None
                    await asyncio.wait_for(task, 60)
                    assert surface.final.text  # every turn answered
            finally:
                await responder.aclose()
                await llm.aclose()
                totals = await store.usage_totals(0.0)
                await store.close()
    usage = Usage(totals.input_tokens, totals.output_tokens,
                  totals.cache_creation_input_tokens, totals.cache_read_input_tokens)
    price = profile(MODEL).price
    assert price is not None
    dollars = (usage.input_tokens * price.input
               + usage.cache_creation_input_tokens * price.cache_write
               + usage.cache_read_input_tokens * price.cache_read) / 1_000_000
    return {"input_tokens": usage.input_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
            "cache_read_tokens": usage.cache_read_input_tokens,
            "prompt_tokens": usage.prompt_tokens, "input_usd": dollars}


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        docs = Path(folder) / "docs"
        write_docs(docs)
        runs: dict[str, list[dict[str, float]]] = {"cached": [], "uncached": []}
        for run in range(RUNS):
            runs["uncached"].append(await thread_cost(docs, caching=False))
            runs["cached"].append(await thread_cost(docs, caching=True))
            print(f"run {run + 1}/{RUNS}: {runs['cached'][-1]} vs {runs['uncached'][-1]}",
                  flush=True)
    figures = {name: {k: median([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()}
    saving = 1 - figures["cached"]["input_usd"] / figures["uncached"]["input_usd"]
    print(f"\n10-turn thread, {MODEL}, input cost: ${figures['uncached']['input_usd']:.5f} "
          f"without caching, ${figures['cached']['input_usd']:.5f} with: {saving:.0%} cheaper")
    write_result("caching", {"model": MODEL, "turns": len(QUESTIONS), "runs": RUNS, **figures,
                             "input_cost_saving": round(saving, 3)})


if __name__ == "__main__":
    asyncio.run(main())
