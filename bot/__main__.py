"""The `supportbot` command: run, chat, check, kb and stats. Each command delegates at once."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from bot.config import ConfigError, Settings, load_settings
from bot.conversation import Platform
from bot.database import StoreError
from bot.health import LoopLag
from bot.knowledge import keep_fresh
from bot.lifecycle import Lifecycle, jsonl, parse_person, purge_daily
from bot.logs import configure_logging
from bot.metrics import MetricsPortError
from bot.metrics import serve as serve_metrics
from bot.platforms import console_chat, enabled
from bot.policy import start_of_day
from bot.runtime import Runtime, open_runtime, take_over_replies
from bot.shared import SharedError
from bot.stats import since_time

log = logging.getLogger("supportbot")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        sys.exit(f"supportbot: configuration error: {error}")
    configure_logging(settings.log_level, settings.secrets())
    command: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]] = args.func
    try:
        code: int = run_loop(command(settings, args))
    except KeyboardInterrupt:
        code = 130
    except (StoreError, SharedError, MetricsPortError) as error:
        sys.exit(f"supportbot: {error}")
    except ConfigError as error:  # found at start: another instance live without Redis
        sys.exit(f"supportbot: configuration error: {error}")
    except BrokenPipeError:  # `supportbot kb list | head`: the reader has gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def run_loop(work: Coroutine[Any, Any, int]) -> int:
    """Run the command on uvloop where it is installed (every platform but Windows), else on
    asyncio's own loop: the same asyncio API, its loop, sockets and timers in C."""
    try:
        import uvloop
    except ImportError:
        log.debug("event loop: asyncio's own (uvloop is not installed)")
        return asyncio.run(work)
    log.debug("event loop: uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supportbot",
        description="A support bot for Slack and Discord that answers from your docs.")
    sub = parser.add_subparsers(dest="command")
    parser.set_defaults(func=_run)
    sub.add_parser("run", help="start every configured adapter (console chat if none)"
                   ).set_defaults(func=_run)
    sub.add_parser("chat", help="chat in the terminal").set_defaults(func=_chat)
    sub.add_parser("check", help="validate the configuration and reach each service"
                   ).set_defaults(func=_check)
    kb = sub.add_parser("kb", help="manage the knowledge base: docs folders and websites")
    from bot.kb_cli import add_parser

    add_parser(kb, _usage(kb))
    from bot.eval_cli import add_parser as add_eval

    add_eval(sub)
    stats = sub.add_parser("stats", help="questions, answers, latency, cost and docs gaps")
    window = stats.add_mutually_exclusive_group()
    window.add_argument("--since", type=since_time, default=None, metavar="WHEN",
                        help="how far back: 7d, 12h, 2w or a date such as 2026-11-01 "
                             "(default 30d)")
    window.add_argument("--days", type=_positive_days, default=None,
                        help="how many days back (a synonym of --since Nd)")
    stats.add_argument("--json", action="store_true", help="print JSON for scripts")
    stats.set_defaults(func=_stats)
    export = sub.add_parser("export", help="write conversations as JSON lines")
    export.add_argument("--since", type=since_time, default=0.0, metavar="WHEN",
                        help="only messages since then: a date such as 2026-11-01, or 30d")
    export.add_argument("--output", "-o", default="-", metavar="FILE",
                        help="where to write (default: standard output)")
    export.set_defaults(func=_export)
    forget = sub.add_parser("forget", help="delete one person's messages everywhere")
    forget.add_argument("--user", required=True, type=_person, metavar="PLATFORM:ID",
                        help="e.g. slack:U0123ABC or discord:80351110224678912")
    forget.set_defaults(func=_forget)
    return parser


def _usage(parser: argparse.ArgumentParser) -> Callable[[Settings, argparse.Namespace],
                                                         Coroutine[Any, Any, int]]:
    async def show(settings: Settings, args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _positive_days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 36_500:
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {text!r}")
    return value


def _person(text: str) -> tuple[Platform, str]:
    try:
        return parse_person(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.asynccontextmanager
async def _duties(runtime: Runtime, stop: asyncio.Event) -> AsyncIterator[None]:
    """`run`'s background duties, owned here and cancelled on the way out: indexing
    SUPPORTBOT_KB (and sources added with `kb add`), the daily retention purge, and the
    event-loop lag sampler (its figures are logged on the way out)."""
    settings = runtime.settings
    lag = LoopLag(on_sample=runtime.metrics.loop_lag)
    tasks = [asyncio.create_task(keep_fresh(runtime.knowledge, settings.kb_sources,
                                            settings.kb_refresh_minutes, stop)),
             asyncio.create_task(lag.watch())]
    if settings.retention_days is not None:
        tasks.append(asyncio.create_task(
            purge_daily(Lifecycle(runtime.store.engine), settings.retention_days, stop)))
    if runtime.instances is not None:
        tasks.append(asyncio.create_task(take_over_replies(runtime, stop)))
    try:
        async with _metrics_port(runtime):
            yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lag.report()


@contextlib.asynccontextmanager
async def _metrics_port(runtime: Runtime) -> AsyncIterator[None]:
    """/metrics, /healthz and /readyz on SUPPORTBOT_METRICS_PORT, when it is set (Slack's HTTP
    mode serves them on PORT as well)."""
    port = runtime.settings.metrics_port
    if port is None:
        yield
        return
    async with serve_metrics(runtime.settings.slack_http_host, port, runtime.metrics,
                             runtime.readiness):
        yield


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    platforms = enabled(settings)
    stop = _stop_on_signals()
    if not platforms:
        async with open_runtime(settings, serving=True) as runtime, _duties(runtime, stop):
            await console_chat(runtime, stop)
        return 0
    adapters_stop = asyncio.Event()
    async with open_runtime(settings, serving=True) as runtime, _duties(runtime, stop):
        runtime.waiting.update(platform.name for platform in platforms)

        async def wind_down() -> None:
            await stop.wait()
            # Finish replies in flight (with an "interrupted" note) while connections are up.
            await runtime.responder.aclose()
            adapters_stop.set()

        failed = False
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(wind_down())
                for platform in platforms:
                    group.create_task(platform.serve(runtime, adapters_stop))
        except* Exception as failures:
            failed = True
            for failure in failures.exceptions:
                log.error("stopped: %s", failure)
    return 1 if failed else 0


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    async with open_runtime(settings) as runtime:
        await console_chat(runtime, stop)
    return 0


async def _check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.checks import run_checks

    return await run_checks(settings)


async def _with_runtime(settings: Settings, job: Callable[[Runtime], Awaitable[int]]) -> int:
    async with open_runtime(settings) as runtime:
        return await job(runtime)


async def _stats(settings: Settings, args: argparse.Namespace) -> int:
    from bot.stats import People, build_report, render
    from bot.stats_rows import StatsRows

    now = time.time()
    since = args.since if args.since is not None else now - (args.days or 30.0) * 86400

    async def job(runtime: Runtime) -> int:
        rows = StatsRows(runtime.store.engine)
        handed, resolved, open_now, not_posted = await rows.handovers(since)
        up, down, downvoted = await runtime.store.handoffs.votes(since)
        people = People(handed, resolved, open_now, not_posted, await rows.resolved_by_bot(since),
                        up, down, tuple(downvoted))
        report = build_report(
            since, await rows.replies(since),
            await rows.gap_questions(since), await runtime.store.spent_since(start_of_day(now)),
            settings.daily_budget_usd, people,
        )
        print(json.dumps(report.as_json(), indent=2) if args.json else render(report))
        return 0

    return await _with_runtime(settings, job)


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    async def job(runtime: Runtime) -> int:
        records = await Lifecycle(runtime.store.engine).export(args.since)
        text = jsonl(records)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            try:  # customers' conversations: readable by the owner only from the start
                fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
            except OSError as error:
                print(f"supportbot: cannot write {args.output}: {error.strerror}",
                      file=sys.stderr)
                return 1
            print(f"wrote {len(records)} conversations to {args.output}", file=sys.stderr)
        return 0

    return await _with_runtime(settings, job)


async def _forget(settings: Settings, args: argparse.Namespace) -> int:
    platform, person = args.user

    async def job(runtime: Runtime) -> int:
        gone = await Lifecycle(runtime.store.engine).forget(platform, person)
        print(f"deleted for {platform.value}:{person}:")
        for line in gone.lines():
            print(f"  {line}")
        if not any((gone.questions, gone.answers, gone.docs_gaps, gone.votes, gone.handovers,
                    gone.drafts)):
            print(f"nothing is kept for {platform.value}:{person}; check the id (Slack: U0123ABCD "
                  "from the profile's ⋮ → Copy member ID; Discord: Developer Mode → Copy User ID)")
        return 0

    return await _with_runtime(settings, job)


if __name__ == "__main__":
    main()
