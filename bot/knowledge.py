"""The team's docs as a searchable knowledge base: sources in, scored passages out.

Sources are folders of docs files and docs websites; each keeps its documents apart, so one
can be refreshed or removed without touching the others. Search ranks whole sections with
BM25 over two fields, heading path and text (SQLite FTS5; a word as written, or its other
forms when the docs never use it as written), fuses that with the semantic signal when it
is installed (embedding.py), shows each section's best passage, and tells how sure it is,
so a question the docs do not answer gets no passages rather than four unrelated ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bot.conversation import Passage
from bot.crawl import is_site, site_source
from bot.database import SQLiteThread
from bot.docs_parse import ParsedDoc, decode_doc, is_doc_name, parse_document
from bot.embedding import Embedder, VectorIndex, to_blob
from bot.kb_sites import SiteError, refresh_site
from bot.kb_store import DocumentRow, Hit, IndexReport, KbTables, Known, SourceRow
from bot.retrieval import (
    MAX_TERMS,
    Ranked,
    asks_about_releases,
    diversified,
    folded,
    rrf,
    terms,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)
T = TypeVar("T")

CANDIDATES = 50  # sections each signal proposes before fusion
# Search ranks whole sections with FTS5's BM25, which scores the heading path and the text as
# two fields, each against its own average length: a word in a short heading already weighs
# more than one in a long text. An extra weight on the heading did not help on the pip and
# pytest sets (1.5-3 lost up to 0.07 at hit@5), so both fields count the same.
HEADING_WEIGHT = 1.0
PER_DOCUMENT = 2  # sections one document may hold among the results
# The semantic ranking's say in the fusion, BM25's being 1; chosen on the pip and pytest
# sets from 0.1, 0.3 and 0.5 (README, "Finding the right page").
SEMANTIC_WEIGHT = 0.3
# A changelog or release announcement keeps this share of its fused score: it names every
# feature in a line, so it matches many questions whose answer is a guide. Chosen on the pip
# and pytest sets (0.4-0.8 gave the same figures there); README, "Finding the right page".
RELEASE_NOTES_WEIGHT = 0.6
# The don't-know gate: the best section by the words must hold this share of the
# question's weight (by IDF over the sections). Chosen on the pip and pytest sets as the
# highest that wrongly declines at most one answerable question in either.
MIN_COVERAGE = 0.18
# ...and, for a question that stands on its own, less than half of that weight may be in
# words no section uses in any form: "how do I bake sourdough bread?" shares "bake" with a
# code sample, not its subject. Set on the pip set, where no answerable question reaches 0.42.
MAX_UNKNOWN = 0.5


@dataclass(frozen=True)
class Search:
    """A ranking with the evidence the gate looks at."""

    passages: list[Passage]
    confidence: float  # the best BM25 section's share of the question's weight
    confident: bool
    indexed: bool = True  # False: the knowledge base holds no docs at all


class Knowledge:
    """Sources in, passages out; every SQL statement is in kb_store.py."""

    def __init__(
        self, sqlite: SQLiteThread, load_embedder: Callable[[], Embedder | None] | None = None
    ) -> None:
        """`load_embedder` loads the semantic model; it is called on first use, so commands
        that never search start at once (None: BM25 alone)."""
        self.sqlite = sqlite
        self._load_embedder = load_embedder
        self._embedder: Embedder | None = None
        self._vectors: VectorIndex | None = None  # loaded on first search, dropped on change
        self._loading = asyncio.Lock()

    async def embedder(self) -> Embedder | None:
        async with self._loading:  # two first searches at once load it once
            load, self._load_embedder = self._load_embedder, None
            if load is not None:
                self._embedder = await asyncio.to_thread(load)
        return self._embedder

    def _tables(self) -> KbTables:
        return KbTables(self.sqlite.db)

    async def _db(self, fn: Callable[[KbTables], T]) -> T:
        return await self.sqlite.call(lambda: fn(self._tables()))

    # --- sources ------------------------------------------------------------------------

    async def index_folder(self, folder: Path, progress: Progress | None = None) -> IndexReport:
        """Add a folder as a source (once) and bring its documents in line with it."""
        source = str(folder.resolve())
        await self._db(lambda t: t.add_source(source, "folder"))
        return await self._refresh_folder(source, progress)

    async def register(self, source: str) -> bool:
        """Note a source (folder path or site URL) without reading it; False if known."""
        if is_site(source):
            site = site_source(source)  # /docs, /docs/ and /docs/index.html are one source
            return await self._db(lambda t: t.add_source(site, "site"))
        return await self._db(lambda t: t.add_source(source, "folder"))

    async def add_site(self, url: str, progress: Progress | None = None) -> IndexReport:
        """Add a docs website (its sitemap.xml or a start page) and crawl it."""
        url = site_source(url)
        new = await self.register(url)
        try:
            return await refresh_site(self, url, progress)
        except SiteError as error:
            if new:  # a mistyped URL is not kept as a source
                await self._db(lambda t: t.remove_source(url))
            else:  # a known site keeps its pages; `kb list` says the refresh failed
                await self._mark_failed(url, str(error))
            raise

    async def refresh(self, progress: Progress | None = None) -> dict[str, IndexReport | str]:
        """Refresh every source; a source that fails keeps its old documents."""
        results: dict[str, IndexReport | str] = {}
        for row in await self.sources():
            try:
                if row.kind == "site":
                    results[row.id] = await refresh_site(self, row.id, progress)
                else:
                    results[row.id] = await self._refresh_folder(row.id, progress)
            except (OSError, SiteError) as error:
                results[row.id] = str(error)
                await self._mark_failed(row.id, str(error))
        return results

    async def _mark_failed(self, source: str, problem: str) -> None:
        await self._db(lambda t: t.refreshed(source, problem))

    async def mark_refreshed(self, source: str) -> None:
        await self._db(lambda t: t.refreshed(source))

    async def remove(self, source: str) -> int | None:
        """Remove a source (as `kb list` names it, or a folder path); None when unknown."""
        rows = {row.id: row for row in await self.sources()}
        if is_site(source):
            key = site_source(source)
        else:
            key = source if source in rows else str(Path(source).resolve())
        if key not in rows:
            return None
        removed = await self._db(lambda t: t.remove_source(key))
        self._vectors = None
        return removed

    async def sources(self) -> list[SourceRow]:
        return await self._db(lambda t: t.sources())

    async def documents(self) -> list[DocumentRow]:
        return await self._db(lambda t: t.documents())

    async def sections(self) -> list[tuple[str, str, str]]:
        """(path, heading path, text) of every whole section (the eval's baseline reads them)."""
        return await self._db(lambda t: t.sections())

    async def clear(self) -> int:
        self._vectors = None
        return await self._db(lambda t: t.clear())

    async def _refresh_folder(self, source: str, progress: Progress | None) -> IndexReport:
        folder = Path(source)
        if not folder.is_dir():
            raise OSError(f"{folder} is not a folder any more")
        files = await asyncio.to_thread(doc_files, folder)
        known = await self._db(lambda t: t.known(source))
        counts = {"added": 0, "updated": 0, "passages": 0, "unchanged": 0}
        skipped: dict[str, str] = {}  # name: why it is not indexed
        for done, file in enumerate(files, start=1):
            name = file.relative_to(folder).as_posix()
            try:
                text, digest, why = await asyncio.to_thread(read_doc, file)
                unchanged = name in known and known[name].sha256 == digest
                doc = None if text is None or unchanged else await asyncio.to_thread(
                    parse_document, name, text)
            except OSError as error:  # gone or unreadable since the folder was listed
                text, unchanged, why = None, False, f"unreadable ({error.strerror or error})"
            except (RecursionError, ValueError) as error:  # one odd file never stops the rest
                text, unchanged, why = None, False, f"could not be parsed ({error!r:.80})"
            if text is None:
                skipped[name] = why
                log.warning("%s is %s; not indexed", file, why)
            elif unchanged:
                counts["unchanged"] += 1
            elif doc is not None:
                counts["added" if name not in known else "updated"] += 1
                counts["passages"] += await self.write_document(
                    source, name, doc, Known(digest, "", ""), doc.url or ""
                )
            if progress:
                progress(done, len(files))
        seen = {f.relative_to(folder).as_posix() for f in files} - set(skipped)
        gone = [name for name in known if name not in seen]
        await self.forget(source, gone)
        await self.mark_refreshed(source)
        await self.embed_missing()
        return IndexReport(counts["added"], counts["updated"], len(gone), counts["unchanged"],
                           counts["passages"],
                           skipped=tuple(f"{name}: {why}" for name, why in skipped.items()))

    async def write_document(
        self, source: str, path: str, doc: ParsedDoc, known: Known, url: str
    ) -> int:
        """Store one parsed document in place of its old passages; how many it has."""
        await self._db(lambda t: t.replace_document(source, path, doc.title, url, known,
                                                    doc.sections))
        self._vectors = None
        return len(doc.sections)

    async def forget(self, source: str, paths: Sequence[str]) -> None:
        if paths:
            await self._db(lambda t: t.remove_documents(source, paths))
            self._vectors = None

    async def known(self, source: str) -> dict[str, Known]:
        return await self._db(lambda t: t.known(source))

    async def embed_missing(self) -> int:
        """Vectors for passages that have none yet (after indexing); how many were made."""
        embedder = await self.embedder()
        if embedder is None:
            return 0
        missing = await self._db(lambda t: t.missing_vectors(embedder.name))
        for start in range(0, len(missing), 2048):
            batch = missing[start : start + 2048]
            matrix = await asyncio.to_thread(embedder.embed, [text for _, text in batch])
            await self._save_vectors(
                embedder.name, [(pid, to_blob(matrix[i])) for i, (pid, _) in enumerate(batch)]
            )
        self._vectors = None
        return len(missing)

    async def _save_vectors(self, model: str, rows: list[tuple[int, bytes]]) -> None:
        await self._db(lambda t: t.save_vectors(model, rows))

    # --- search -------------------------------------------------------------------------

    async def search(
        self, question: str, limit: int = 4, earlier: Sequence[str] = ()
    ) -> list[Passage]:
        """The passages that answer `question`, best first; none when the docs do not seem
        to answer it. `earlier`: the thread's previous questions, oldest first."""
        found = await self.rank(question, limit, earlier)
        return found.passages if found.confident else []

    async def rank(self, question: str, limit: int = 4, earlier: Sequence[str] = ()) -> Search:
        """The best passages whatever the gate says, with its evidence (for `kb eval`).
        Sections are ranked whole (a long one is several passages); each result is the
        passage of its section that matches the question best."""
        words = folded(question, earlier)
        total, phrases = await self._db(lambda t: t.phrases(words))
        searched = [p for p, count in phrases.values() if count]  # what the docs hold
        query = " OR ".join(searched)
        lexical = await self._db(lambda t: t.bm25(query, CANDIDATES, HEADING_WEIGHT)) \
            if query else []
        semantic = await self._semantic(" ".join([*earlier[-2:], question]))
        by_id = {hit.section_id: hit for hit in lexical}
        meaning: list[int] = []  # sections in the order their passages were found by meaning
        nearest: dict[int, int] = {}  # section: its passage nearest in meaning
        if semantic:
            found = await self._db(lambda t: t.sections_of([pid for pid, _ in semantic]))
            for pid, _ in semantic:
                if pid in found and found[pid].section_id not in meaning:
                    meaning.append(found[pid].section_id)
                    nearest[found[pid].section_id] = pid
                    by_id.setdefault(found[pid].section_id, found[pid])
        fused = rrf([[h.section_id for h in lexical], meaning], [1.0, SEMANTIC_WEIGHT])
        # Release notes rank below the guides unless the question is about releases.
        notes = 1.0 if asks_about_releases(words) else RELEASE_NOTES_WEIGHT
        ranked = sorted(
            (Ranked(sid, by_id[sid].path, score * (notes if by_id[sid].release_notes else 1.0))
             for sid, score in fused.items()),
            key=lambda r: -r.score,
        )
        best = diversified(_distinct(ranked, by_id), limit, PER_DOCUMENT)
        if not total:  # no docs at all: nothing to hold the question to
            return Search([], 1.0, True, indexed=False)
        shown = await self._shown([r.id for r in best], query, nearest)
        # The score shown is the section's BM25 relevance (0 for one found by meaning alone):
        # it says how well the words matched, where the fused rank only says in which order.
        passages = [_passage(by_id[r.id], shown[r.id]) for r in best if r.id in shown]
        # The gate: how much of the question's weight (by IDF over the sections) the best
        # section by the words holds. A short follow-up ("and in the other format?") is about
        # the thread: held to the thread's words, not to whether the docs use its own; the
        # model, which sees the thread, says when the passages do not answer.
        idf = {w: math.log(1 + total / (1 + count)) for w, (_, count) in phrases.items()}
        top = lexical[0] if lexical else None
        held = await self._db(lambda t: t.present(top.section_id, searched)) if top else set()
        weight = sum(idf.values())
        confidence = sum(idf[w] for w, (p, _) in phrases.items() if p in held) / weight \
            if weight else 0.0
        alone = len(words) == len(terms(question)[:MAX_TERMS])
        unknown = sum(idf[w] for w, (_, count) in phrases.items() if not count) / weight \
            if alone and weight else 0.0
        return Search(passages, confidence,
                      confidence >= MIN_COVERAGE and unknown < MAX_UNKNOWN)

    async def _shown(self, sections: Sequence[int], query: str,
                     nearest: dict[int, int]) -> dict[int, str]:
        """The passage to show of each section: its only one; else the one that matches the
        words best; else the one nearest in meaning; else its first."""
        firsts = await self._db(lambda t: t.first_passages(sections))
        several = [s for s in sections if s in firsts and firsts[s][1] > 1]
        by_words = await self._db(lambda t: t.best_passages(query, several)) if several else {}
        chosen = {s: by_words.get(s) or nearest.get(s) or firsts[s][0]
                  for s in sections if s in firsts}
        texts = await self._db(lambda t: t.passage_texts(list(chosen.values())))
        return {s: texts.get(pid, "") for s, pid in chosen.items()}

    async def _semantic(self, text: str) -> list[tuple[int, float]]:
        embedder = await self.embedder() if terms(text) else None
        if embedder is None:
            return []
        if self._vectors is None:
            rows = await self._db(lambda t: t.vectors(embedder.name))
            self._vectors = VectorIndex([pid for pid, _ in rows], [blob for _, blob in rows])
        return self._vectors.top(embedder.embed([text])[0], CANDIDATES)

async def keep_fresh(
    knowledge: Knowledge, configured: Sequence[str], every_minutes: float, stop: asyncio.Event
) -> None:
    """`run`'s background task: register SUPPORTBOT_KB's sources, then refresh every source
    now and every `every_minutes` (0: only now) until `stop` is set. Questions are answered
    from the index as it is meanwhile."""
    for source in configured:
        await knowledge.register(source)
    while not stop.is_set():
        for source, result in (await knowledge.refresh()).items():
            if isinstance(result, str):
                log.warning("knowledge source %s was not refreshed: %s", source, result)
            else:  # quiet when nothing changed: the terminal chat shares the screen
                changed = result.added or result.updated or result.removed
                log.log(logging.INFO if changed else logging.DEBUG,
                        "knowledge source %s: %d new, %d changed, %d removed, %d unchanged",
                        source, result.added, result.updated, result.removed, result.unchanged)
        if every_minutes <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_minutes * 60)


# Folders of a docs tree that hold no pages: site-generator templates (Jinja, not text),
# static assets, and installed packages of a virtualenv kept beside the docs.
NOT_DOC_FOLDERS = frozenset({"_templates", "_static", "node_modules", "site-packages",
                             "__pycache__", "_build"})
TEMPLATE_FOLDERS = frozenset({"templates", "overrides", "static"})  # for HTML files only
MAX_DOC_BYTES = 5_000_000  # a bigger file is a data dump or a log, not a docs page


def _distinct(ranked: Sequence[Ranked], hits: dict[int, Hit]) -> list[Ranked]:
    """The ranking without repeats of a passage already in it: two sources that overlap (a
    folder and its parent, /docs/ and /docs/index.html) must not fill the answer twice."""
    seen: set[tuple[str, str]] = set()
    kept: list[Ranked] = []
    for item in ranked:
        hit = hits[item.id]
        key = (hit.heading, hit.digest)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def read_doc(file: Path) -> tuple[str | None, str, str]:
    """A docs file's text and sha256, or None and why it is not a page."""
    size = file.stat().st_size
    if size > MAX_DOC_BYTES:
        return None, "", f"{size / 1e6:.1f} MB, over the {MAX_DOC_BYTES / 1e6:g} MB limit"
    raw = file.read_bytes()
    text = decode_doc(raw)
    return text, hashlib.sha256(raw).hexdigest(), "" if text is not None else "not a text file"


def _passage(hit: Hit, text: str) -> Passage:
    url = hit.url
    if url and hit.anchor and "#" not in url:
        url = f"{url}#{hit.anchor}"
    return Passage(source=hit.path, heading=hit.heading, text=text, url=url,
                   score=round(hit.score, 6))


def doc_files(folder: Path) -> list[Path]:
    """Docs files under the folder: hidden folders (.git, .venv), site-generator templates
    and installed packages left out, and nothing a symbolic link reaches outside the folder
    (a link to ~/.env or /etc/passwd in a docs repo must not end up quoted in answers)."""
    root = folder.resolve()
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        folders = parts[:-1]
        html = path.suffix.lower() in (".html", ".htm")
        if not is_doc_name(path.name) or path.name.startswith(".") or any(
            part.startswith(".") or part in NOT_DOC_FOLDERS
            or (html and part in TEMPLATE_FOLDERS) for part in folders
        ):
            continue
        try:
            if path.is_file() and path.resolve().is_relative_to(root):
                found.append(path)
        except OSError:  # a broken or looping link
            continue
    return sorted(found)
