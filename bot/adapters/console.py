"""The terminal chat: one conversation per user, kept in the same store as the platforms.

It doubles as the simplest Surface: text is printed as it streams, so a restart of
`supportbot chat` continues the same thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
import threading
import uuid
from typing import TextIO

from bot.conversation import Arrival, ConversationKey, Incoming, PageRef, Place, Platform
from bot.inbound import Prepared
from bot.painting import FINISH_TIMEOUT
from bot.ports import Ports
from bot.surface import Ahead, Snapshot, Surface

HELP = "Type a question and press Enter. /reset starts a new conversation, /quit leaves."
PLACE_KIND = "console"
RESUMED = "(answering again your question that a restart cut off)\n"


class ConsoleSurface:
    """Prints a reply as it grows; the typing marker is never printed to a terminal."""

    limit = 1_000_000

    def __init__(self, out: TextIO, user: str, intro: str = "") -> None:
        self.out = out
        self.user = user
        self.intro = intro
        self.printed = ""

    def where(self) -> Place:
        return Place.of(PLACE_KIND, user=self.user)

    def pages(self) -> tuple[PageRef, ...]:
        return ()  # printed lines cannot be found again: a restart prints the answer anew

    def interval(self) -> float:
        return 0.05

    def render(self, markdown: str) -> str:
        return markdown

    def size(self, text: str) -> int:
        return len(text)

    async def start(self) -> None:
        self._write(self.intro + "bot> ")

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> None:
        if ahead is None or await ahead():
            self._catch_up(snapshot.text)

    async def finish(self, snapshot: Snapshot) -> None:
        self._catch_up(snapshot.text)
        self._write("\n\n")

    def _catch_up(self, text: str) -> None:
        if text.startswith(self.printed):
            self._write(text[len(self.printed):])
        else:  # the text was replaced (e.g. a refusal): show the new one in full
            self._write("\n" + text)
        self.printed = text

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


MAX_READS = 1 << 40  # reads of stdin in one chat: in practice until it ends


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines from stdin, read on a daemon thread so a pending read never blocks shutdown.

    Bytes are decoded as UTF-8 with replacement: a terminal in another encoding costs a
    character, never the question.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def put(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the bot is stopping
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def read() -> None:
        # os.read, not sys.stdin's buffered reader: a read still pending when the bot stops
        # (SIGTERM, Ctrl-C) must not hold the reader's lock, or the interpreter aborts on
        # its way out ("could not acquire lock for <stdin>", exit 134).
        fd, pending = sys.stdin.fileno(), b""
        for _ in range(MAX_READS):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                put(raw.decode("utf-8", "replace").rstrip("\r"))
        if pending:
            put(pending.decode("utf-8", "replace").rstrip("\r"))
        put(None)

    threading.Thread(target=read, name="supportbot-stdin", daemon=True).start()
    return queue


async def chat(ports: Ports, stop: asyncio.Event, out: TextIO = sys.stdout) -> None:
    """Run the terminal chat until EOF, /quit or `stop`."""
    user = getpass.getuser()
    interactive = sys.stdin.isatty()
    _banner(ports, interactive)
    lines = _stdin_lines(asyncio.get_running_loop())
    thread = await ports.state.get(f"thread:{user}") or "1"
    if not await _finished_before(_resumed(ports, user, out), stop):
        return
    for _ in range(1_000_000):  # one pass per line typed
        if interactive:
            out.write("you> ")
            out.flush()
        line = await _next_line(lines, stop)
        if line is None or line.strip() == "/quit":
            return
        if line.strip() == "/reset":
            thread = str(int(thread) + 1)
            await ports.state.set(f"thread:{user}", thread)
            out.write("(new conversation)\n\n")
            continue
        if line.strip() and not await _answered(ports, _question(user, thread, line), out, stop):
            await ports.finish_replies(FINISH_TIMEOUT)  # Ctrl-C mid-answer: end it with a note
            return


def _question(user: str, thread: str, line: str) -> Incoming:
    return Incoming(
        key=ConversationKey(Platform.CONSOLE, "local", user, thread),
        author_id=user,
        author_name=user,
        text=line,
        event_id=uuid.uuid4().hex,
        arrival=Arrival.DM,
    )


async def _answered(ports: Ports, incoming: Incoming, out: TextIO, stop: asyncio.Event) -> bool:
    """Hand one line in and wait for its answer; False if `stop` came first."""

    async def prepared() -> Prepared:
        return Prepared(incoming, ConsoleSurface(out, incoming.author_id))

    taking = ports.inbound.accept(Platform.CONSOLE, incoming.event_id, incoming.author_id,
                                  prepared, costly=False)
    reply = await taking if taking is not None else None
    return reply is None or await _finished_before(reply, stop)


def _resumed(ports: Ports, user: str, out: TextIO) -> asyncio.Future[None]:
    """This user's replies a stop cut off, answered again (or closed) before the prompt."""

    async def restore(place: Place, pages: tuple[PageRef, ...]) -> Surface | None:
        if place.kind != PLACE_KIND or place.get("user") != user:
            return None
        return ConsoleSurface(out, user, RESUMED)

    async def run() -> None:
        for task in await ports.resume(restore):  # one after another, as they were asked
            await task

    return asyncio.ensure_future(run())


async def _finished_before(task: asyncio.Future[None], stop: asyncio.Event) -> bool:
    """Wait for the reply; False if `stop` came first (the reply is still running)."""
    stopper: asyncio.Future[None] = asyncio.ensure_future(_stopped(stop))
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    return task.done()


async def _stopped(stop: asyncio.Event) -> None:
    await stop.wait()


async def _next_line(lines: asyncio.Queue[str | None], stop: asyncio.Event) -> str | None:
    getter = asyncio.ensure_future(lines.get())
    stopper = asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return getter.result() if getter in done else None


def _banner(ports: Ports, interactive: bool) -> None:
    settings = ports.settings
    if not ports.model_ready:
        print(
            "supportbot: no ANTHROPIC_API_KEY is set, so I answer from the knowledge base only.\n"
            "  Put ANTHROPIC_API_KEY=sk-ant-... in .env (see .env.example) for AI answers.",
            file=sys.stderr,
        )
    else:
        print(f"supportbot: chatting with {settings.model}; history in {settings.db_shown}",
              file=sys.stderr)
    if not settings.kb_sources:
        print("  SUPPORTBOT_KB is not set: answers use only the docs added with "
              "`supportbot kb add FOLDER_OR_URL`.", file=sys.stderr)
    if interactive:
        print(HELP, file=sys.stderr)
