"""`supportbot eval answers QUESTIONS.jsonl`: the answer pipeline replayed over a question set
(eval_answers.py), as one Message Batch by default or one by one with --no-batch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.batches import BatchStatus, MessageBatches
from bot.config import Settings
from bot.errors import LLMError
from bot.eval_answers import as_json, as_text, by_batch, one_by_one, prepare, report
from bot.kb_cli import warn_unknown_paths
from bot.kb_eval import EvalError, load_questions
from bot.prompts import PromptBook
from bot.runtime import open_runtime


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = sub.add_parser("eval", help="replay a question set through the whole bot")
    commands = evaluate.add_subparsers(dest="eval_command", required=True)
    answers = commands.add_parser(
        "answers", help="answer every question of a set (kb eval's JSON lines, with optional "
                        "key_phrases) and judge the answers; one Message Batch at half price")
    answers.add_argument("questions", type=Path)
    answers.add_argument("--no-batch", action="store_true",
                         help="ask one by one at the single price (any provider)")
    answers.add_argument("--json", metavar="FILE", type=Path,
                         help="also write the whole report as JSON to FILE")
    answers.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                         help="first wait between batch status checks (it grows to 60 s)")
    answers.set_defaults(func=_answers)


def _progress(status: BatchStatus) -> None:
    end = "\n" if status.status == "ended" or not sys.stderr.isatty() else "\r"
    counts = ", ".join(f"{k} {v}" for k, v in status.counts.items() if v and k != "processing")
    print(f"batch {status.id}: {status.status}, {status.done}/{status.total} done"
          + (f" ({counts})" if counts else ""), end=end, file=sys.stderr, flush=True)


async def _answers(settings: Settings, args: argparse.Namespace) -> int:
    try:
        questions = load_questions(args.questions)
    except (OSError, EvalError) as error:
        print(f"supportbot: {error}", file=sys.stderr)
        return 2
    if args.json is not None and (args.json.is_dir() or not args.json.parent.is_dir()):
        print(f"supportbot: --json {args.json}: not a file in an existing folder",
              file=sys.stderr)
        return 2
    if not args.no_batch and settings.provider.name != "anthropic":
        print(f"supportbot: the Message Batches API is only on the Anthropic API, not on "
              f"{settings.provider.name}; run with --no-batch to ask one by one",
              file=sys.stderr)
        return 2
    if not settings.model_ready:
        print("supportbot: eval answers asks the model: set ANTHROPIC_API_KEY (or "
              "SUPPORTBOT_PROVIDER for Bedrock or Vertex)", file=sys.stderr)
        return 2
    async with open_runtime(settings) as runtime:
        client = runtime.llm
        assert client is not None  # model_ready
        documents = {doc.path for doc in await runtime.knowledge.documents()}
        if not documents:
            print("supportbot: the knowledge base is empty: `supportbot kb add DOCS` first",
                  file=sys.stderr)
            return 2
        warn_unknown_paths(questions, documents)
        try:
            asked, judged = await prepare(
                runtime.knowledge, PromptBook.load(settings.prompts_dir), questions, client,
                settings.max_tokens)
            if args.no_batch:
                judged.update(await one_by_one(client, asked))
            elif asked:
                batches = MessageBatches(client.provider)
                try:
                    judged.update(await by_batch(batches, asked, _progress, args.poll))
                finally:
                    await batches.aclose()
        except LLMError as error:
            print(f"supportbot: eval answers: the model could not answer: {error}",
                  file=sys.stderr)
            return 1
    result = report("one by one" if args.no_batch else "batch", settings.model, questions,
                    judged)
    print(as_text(result))
    if args.json is not None:
        args.json.write_text(as_json(result) + "\n")
    return 0
