"""`supportbot kb …`: add, remove, list, search and evaluate the knowledge base's sources."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.crawl import is_site
from bot.embedding import Embedder
from bot.errors import LLMError
from bot.kb_sites import SiteError
from bot.kb_store import IndexReport
from bot.knowledge import Knowledge, Progress
from bot.runtime import Runtime, model_client, open_runtime
from bot.stats import since_time
from bot.store import Store
from bot.suggest import Suggestions

if TYPE_CHECKING:
    from bot.kb_eval import EvalQuestion

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def add_parser(kb: argparse.ArgumentParser, usage: Command) -> None:
    commands = kb.add_subparsers(dest="kb")
    kb.set_defaults(func=usage)  # `supportbot kb` alone explains itself
    add = commands.add_parser(
        "add", aliases=["index"],
        help="add and index folders of docs or docs websites (sitemap.xml or a start page)",
    )
    add.add_argument("sources", nargs="*", metavar="FOLDER_OR_URL",
                     help="default: the sources in SUPPORTBOT_KB")
    add.set_defaults(func=_add)
    remove = commands.add_parser("remove", help="remove a source and its documents")
    remove.add_argument("source", metavar="FOLDER_OR_URL")
    remove.set_defaults(func=_remove)
    listing = commands.add_parser("list", help="list sources (with --documents, each document)")
    listing.add_argument("--documents", action="store_true",
                         help="also list each source's documents under it")
    listing.set_defaults(func=_list)
    search = commands.add_parser("search", help="show the passages a question would get")
    search.add_argument("query")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.add_argument("--limit", type=int, default=4, choices=range(1, 21), metavar="1-20")
    search.set_defaults(func=_search)
    evaluate = commands.add_parser(
        "eval", help="measure search on a question set (JSON lines) beside a BM25 baseline")
    evaluate.add_argument("questions", type=Path)
    evaluate.add_argument("--docs", metavar="FOLDER",
                          help="evaluate on this folder in a throwaway index instead")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument(
        "--answers", action="store_true",
        help="also put each question the gate lets through to the model, as the bot would, "
             "and count its 'not in the docs' answers (needs ANTHROPIC_API_KEY; uses tokens)")
    evaluate.set_defaults(func=_eval)
    gaps = commands.add_parser(
        "gaps", help="questions the docs did not answer (pages to write), newest first")
    gaps.add_argument("--days", type=float, default=30.0, help="how many days back (30)")
    gaps.set_defaults(func=_gaps)
    suggest = commands.add_parser(
        "suggest", help="draft a docs page from each thread a person resolved")
    suggest.add_argument("--since", type=since_time, default=None, metavar="WHEN",
                         help="resolved since then: 30d, 2w or a date (default 30d)")
    suggest.add_argument("--out", type=Path, default=Path("kb-suggestions"), metavar="FOLDER",
                         help="where to write the drafts (default ./kb-suggestions)")
    suggest.set_defaults(func=_suggest)
    clear = commands.add_parser("clear", help="remove every source and document")
    clear.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    clear.set_defaults(func=_clear)


def terminal_progress(label: str) -> Progress | None:
    """Files or pages done / total on one updating line, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def _describe(report: IndexReport) -> str:
    text = (f"{report.added} new, {report.updated} changed, {report.removed} removed, "
            f"{report.unchanged} unchanged; {report.passages} passages written")
    for entry in report.skipped[:5]:
        text += f"\n  skipped {entry}"
    if report.failed:
        text += (f"\n  {_count(report.failed, 'page')} could not be fetched (they keep what "
                 "was indexed):")
        text += "".join(f"\n  - {problem}" for problem in report.problems[:5])
    return text


async def _with_runtime(settings: Settings, job: Callable[[Runtime], Awaitable[int]]) -> int:
    async with open_runtime(settings) as runtime:
        return await job(runtime)


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    sources: list[str] = list(args.sources) or list(settings.kb_sources)
    if not sources:
        print("supportbot: give a folder of docs or a docs-site URL, or set SUPPORTBOT_KB",
              file=sys.stderr)
        return 2
    for source in sources:
        if not source.strip():  # an empty "$DOCS" would otherwise index the current folder
            print("supportbot: an empty source; give a folder of docs or an http(s) URL",
                  file=sys.stderr)
            return 2
        if "://" in source and not is_site(source):
            print(f"supportbot: {source} is not an http(s) URL; give a folder of docs or an "
                  "http(s) URL", file=sys.stderr)
            return 2
        if not is_site(source) and not Path(source).is_dir():
            what = "is not a folder" if Path(source).exists() else "does not exist"
            print(f"supportbot: {source} {what}; give a folder of docs or an http(s) URL",
                  file=sys.stderr)
            return 2

    async def job(runtime: Runtime) -> int:
        failed = 0
        for source in sources:
            progress = terminal_progress(source)
            try:
                if is_site(source):
                    report = await runtime.knowledge.add_site(source, progress)
                else:
                    report = await runtime.knowledge.index_folder(Path(source), progress)
            except SiteError as error:
                print(f"supportbot: {error}", file=sys.stderr)
                failed += 1
                continue
            print(f"indexed {source}: {_describe(report)}")
            if not (report.added or report.updated or report.unchanged or is_site(source)):
                print(f"supportbot: warning: {source} holds no docs files (.md, .mdx, .rst, "
                      ".txt, .html); nothing from it can be answered", file=sys.stderr)
        return 1 if failed else 0

    return await _with_runtime(settings, job)


async def _remove(settings: Settings, args: argparse.Namespace) -> int:
    async def job(runtime: Runtime) -> int:
        removed = await runtime.knowledge.remove(args.source)
        if removed is None:
            print(f"supportbot: no source {args.source}; `supportbot kb list` shows them",
                  file=sys.stderr)
            return 2
        print(f"removed {args.source} and its {removed} documents")
        return 0

    return await _with_runtime(settings, job)


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def job(runtime: Runtime) -> int:
        sources = await runtime.knowledge.sources()
        documents = await runtime.knowledge.documents() if args.documents else []
        now = time.time()
        for row in sources:
            age = _age(now - row.refreshed_at) if row.refreshed_at else "never indexed"
            problem = f"\tlast refresh failed: {row.problem}" if row.problem else ""
            print(f"{row.id}\t{row.kind}\t{_count(row.documents, 'document')}\t"
                  f"{_count(row.passages, 'passage')}\t{age}{problem}")
            for doc in (d for d in documents if d.source == row.id):
                print(f"  {doc.path}\t{_count(doc.passages, 'passage')}\t{doc.title}")
        print(_count(len(sources), "source") if sources else
              "no sources yet: `supportbot kb add FOLDER_OR_URL` adds one")
        return 0

    return await _with_runtime(settings, job)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _age(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"refreshed {seconds / size:.0f} {unit} ago"
    return "refreshed just now"


async def _search(settings: Settings, args: argparse.Namespace) -> int:
    async def job(runtime: Runtime) -> int:
        found = await runtime.knowledge.rank(args.query, args.limit)
        if args.json:
            print(json.dumps({
                "confident": found.confident,
                "confidence": round(found.confidence, 3),
                "passages": [dataclasses.asdict(p) for p in found.passages],
            }, indent=2))
            return 0
        for passage in found.passages:
            link = f" <{passage.url}>" if passage.url else ""
            print(f"== {passage.source} — {passage.heading}{link} (score {passage.score:.4f})"
                  f"\n{passage.text[:400]}\n")
        if not found.passages:
            print("no matching passage")
        elif found.confident:
            print(f"(the best passage holds {found.confidence:.0%} of the question's weight: "
                  "the bot answers from these passages)")
        else:
            print(f"(the best passage holds {found.confidence:.0%} of the question's weight: "
                  "too little, so the bot treats this as a question the docs do not answer)")
        return 0

    return await _with_runtime(settings, job)


async def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from bot.kb_eval import (
        EvalError,
        as_json,
        as_text,
        evaluate,
        load_questions,
        model_reader,
        unknown_sections,
    )
    from bot.prompts import PromptBook

    try:
        questions = load_questions(args.questions)
    except (OSError, EvalError) as error:
        print(f"supportbot: {error}", file=sys.stderr)
        return 2
    docs = Path(args.docs) if args.docs is not None else None  # the text kept for messages
    if docs is not None and not docs.is_dir():
        print(f"supportbot: --docs {args.docs} is not a folder (to evaluate on a docs site, "
              "`kb add` it and run `kb eval` without --docs)", file=sys.stderr)
        return 2
    llm = model_client(settings) if args.answers else None
    if args.answers and llm is None:
        print("supportbot: kb eval --answers asks the model: set ANTHROPIC_API_KEY (or "
              "SUPPORTBOT_PROVIDER for Bedrock or Vertex)",
              file=sys.stderr)
        return 2

    async def run(knowledge: Knowledge) -> int:
        warn_unknown_paths(questions, {doc.path for doc in await knowledge.documents()})
        headings = [(path, heading) for path, heading, _ in await knowledge.sections()]
        for section in dict.fromkeys(unknown_sections(questions, headings)):
            print(f"supportbot: warning: section {section!r} is not a heading of its expected "
                  "documents (it is matched by its words, without # or backticks)",
                  file=sys.stderr)
        reader = None if llm is None else model_reader(
            llm, PromptBook.load(settings.prompts_dir), settings.max_tokens)
        try:
            report = await evaluate(knowledge, questions, reader)
        except LLMError as error:
            print(f"supportbot: kb eval --answers: the model could not answer: {error}",
                  file=sys.stderr)
            return 1
        print(as_json(report) if args.json else as_text(report))
        return 0

    try:
        if docs is None:
            return await _with_runtime(settings, lambda runtime: run(runtime.knowledge))
        with tempfile.TemporaryDirectory() as folder:  # the bot's own index is left alone
            store = await Store.open(Path(folder) / "eval.db")
            try:
                knowledge = Knowledge(store.sqlite,
                                      Embedder.load if settings.kb_semantic else None)
                await knowledge.index_folder(docs, terminal_progress(args.docs))
                return await run(knowledge)
            finally:
                await store.close()
    finally:
        if llm is not None:
            await llm.aclose()


def warn_unknown_paths(questions: Sequence[EvalQuestion], documents: set[str]) -> None:
    """A warning for each expected path that names no indexed document (a typo, or a path
    not relative to the docs folder): its question can never be found."""
    from bot.kb_eval import unknown_paths

    for path in unknown_paths(questions, documents):
        print(f"supportbot: warning: expected path {path!r} is not an indexed document "
              "(paths are relative to the docs folder, as `kb list --documents` shows "
              "them)", file=sys.stderr)


async def _gaps(settings: Settings, args: argparse.Namespace) -> int:
    if not 0 < args.days <= 36_500:
        print(f"supportbot: --days must be a positive number of days, got {args.days:g}",
              file=sys.stderr)
        return 2

    async def job(runtime: Runtime) -> int:
        gaps = await runtime.store.docs_gaps(time.time() - args.days * 86400)
        for question, reason, confidence, closest in gaps:
            found = json.loads(closest)
            near = f"; closest: {found[0][1] or found[0][0]}" if found else ""
            why = "the docs hold too little of it" if reason == "gate" else "the model found " \
                "no answer in the passages"
            print(f"- {question}\n    ({why}; {confidence:.0%} of its words matched{near})")
        print(f"{len(gaps)} questions in the last {args.days:g} days were not answered by the docs")
        return 0

    return await _with_runtime(settings, job)


async def _suggest(settings: Settings, args: argparse.Namespace) -> int:
    since = args.since if args.since is not None else time.time() - 30 * 86400

    async def job(runtime: Runtime) -> int:
        suggestions = Suggestions(runtime.store.engine)
        threads = await suggestions.resolved_since(since)
        answered = [t for t in threads if t.answers]
        if answered:
            try:
                args.out.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                print(f"supportbot: cannot create {args.out}: {error.strerror}", file=sys.stderr)
                return 1
        for thread in answered:
            print(f"wrote {await suggestions.write(thread, args.out)}")
        print(f"{_count(len(answered), 'draft')} from threads a person resolved; review them, "
              f"then `supportbot kb add {args.out}`" if answered else
              "no new threads resolved by a person with their answer kept")
        if len(threads) > len(answered):
            print(f"{len(threads) - len(answered)} resolved threads kept no answer from the "
                  "team (the team answered elsewhere, or, on Discord, without the message "
                  "content intent)")
        return 0

    return await _with_runtime(settings, job)


async def _clear(settings: Settings, args: argparse.Namespace) -> int:
    async def job(runtime: Runtime) -> int:
        sources = await runtime.knowledge.sources()
        if not sources:
            print("the knowledge base is already empty")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                print(f"supportbot: kb clear removes all {_count(len(sources), 'source')} and "
                      "their documents; add --yes to do it without a question",
                      file=sys.stderr)
                return 2
            answer = await asyncio.to_thread(
                input, f"Remove all {_count(len(sources), 'source')} and their documents? "
                       "Type yes: ")
            if answer.strip().lower() != "yes":
                print("nothing removed")
                return 1
        print(f"removed {_count(await runtime.knowledge.clear(), 'document')}")
        return 0

    return await _with_runtime(settings, job)
