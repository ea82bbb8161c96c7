"""The team's docs as a searchable knowledge base (SQLite FTS5 in the bot's database)."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from bot.conversation import Passage
from bot.database import SQLiteThread

DOC_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")
PASSAGE_CHARS = 1200
_WORD = re.compile(r"[\w][\w'-]{1,}", re.UNICODE)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_STOPWORDS = frozenset(
    "the a an and or but if of to in on at for with from by is are was were be been do does "
    "did how what why when where who which can could should would i you we my our your it "
    "this that these those me us not no yes have has had get got".split()
)


@dataclass(frozen=True)
class IndexReport:
    added: int
    updated: int
    removed: int
    unchanged: int
    passages: int


@dataclass(frozen=True)
class Document:
    path: str
    title: str
    passages: int


class Knowledge:
    """Index a folder of docs and find the passages that best match a question."""

    def __init__(self, sqlite: SQLiteThread) -> None:
        self.sqlite = sqlite

    async def index_folder(self, folder: Path) -> IndexReport:
        """Bring the index in line with the folder: new, changed and deleted files."""
        return await self.sqlite.call(self._index_folder, folder)

    async def search(self, question: str, limit: int = 4) -> list[Passage]:
        """The passages that best match `question`, best first (BM25)."""
        query = fts_query(question)
        if not query:
            return []
        return await self.sqlite.call(self._search, query, limit)

    async def documents(self) -> list[Document]:
        return await self.sqlite.call(self._documents)

    async def clear(self) -> int:
        return await self.sqlite.call(self._clear)

    def _index_folder(self, folder: Path) -> IndexReport:
        db = self.sqlite.db
        known = {row[0]: row[1] for row in db.execute("SELECT path, sha256 FROM kb_documents")}
        seen: set[str] = set()
        added = updated = unchanged = passages = 0
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in DOC_SUFFIXES)
        for file in files:
            name = file.relative_to(folder).as_posix()
            seen.add(name)
            raw = file.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if known.get(name) == digest:
                unchanged += 1
                continue
            added, updated = (added + 1, updated) if name not in known else (added, updated + 1)
            passages += self._replace_document(name, file.suffix.lower(), raw, digest)
        removed = [name for name in known if name not in seen]
        with db.atomic():
            for name in removed:
                db.execute("DELETE FROM kb_passages WHERE document_path = ?", [name])
                db.execute("DELETE FROM kb_documents WHERE path = ?", [name])
        return IndexReport(added, updated, len(removed), unchanged, passages)

    def _replace_document(self, name: str, suffix: str, raw: bytes, digest: str) -> int:
        text = raw.decode("utf-8", "replace")
        if suffix in (".html", ".htm"):
            text = html_to_markdown(text)
        title, sections = split_sections(text, fallback_title=Path(name).stem)
        db = self.sqlite.db
        with db.atomic():
            db.execute("DELETE FROM kb_passages WHERE document_path = ?", [name])
            db.execute(
                "INSERT OR REPLACE INTO kb_documents (path, title, sha256, indexed_at)"
                " VALUES (?, ?, ?, ?)",
                [name, title, digest, time.time()],
            )
            db.conn.executemany(
                "INSERT INTO kb_passages (document_path, heading, text) VALUES (?, ?, ?)",
                [(name, heading, body) for heading, body in sections],
            )
        return len(sections)

    def _search(self, query: str, limit: int) -> list[Passage]:
        rows = self.sqlite.db.execute(
            "SELECT p.document_path, p.heading, p.text FROM kb_passages_fts f"
            " JOIN kb_passages p ON p.rowid = f.rowid"
            " WHERE kb_passages_fts MATCH ? ORDER BY f.rank LIMIT ?",
            [query, limit],
        ).fetchall()
        return [Passage(source=r[0], heading=r[1], text=r[2]) for r in rows]

    def _documents(self) -> list[Document]:
        rows = self.sqlite.db.execute(
            "SELECT d.path, d.title, count(p.id) FROM kb_documents d"
            " LEFT JOIN kb_passages p ON p.document_path = d.path GROUP BY d.path ORDER BY d.path"
        ).fetchall()
        return [Document(path=r[0], title=r[1], passages=int(r[2])) for r in rows]

    def _clear(self) -> int:
        db = self.sqlite.db
        with db.atomic():
            count = int(db.execute("SELECT count(*) FROM kb_documents").fetchone()[0])
            db.execute("DELETE FROM kb_passages")
            db.execute("DELETE FROM kb_documents")
        return count


def fts_query(question: str, max_terms: int = 12) -> str:
    """An FTS5 query that matches any meaningful word of the question (quoted, OR-ed)."""
    terms: list[str] = []
    for word in _WORD.findall(question.lower()):
        if word in _STOPWORDS or word in terms:
            continue
        terms.append(word)
        if len(terms) == max_terms:
            break
    return " OR ".join('"' + t.replace('"', "") + '"' for t in terms)


def split_sections(text: str, fallback_title: str) -> tuple[str, list[tuple[str, str]]]:
    """The document's title and its (heading, passage) pairs, each passage ≤ PASSAGE_CHARS."""
    title = fallback_title
    heading = fallback_title
    sections: list[tuple[str, str]] = []
    lines: list[str] = []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            sections.extend(_passages(heading, lines))
            heading, lines = match.group(2), []
            if len(match.group(1)) == 1 and title == fallback_title:
                title = heading
        else:
            lines.append(line)
    sections.extend(_passages(heading, lines))
    return title, sections


def _passages(heading: str, lines: list[str]) -> list[tuple[str, str]]:
    paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
    out: list[tuple[str, str]] = []
    current = ""
    for paragraph in paragraphs:
        if current and len(current) + len(paragraph) + 2 > PASSAGE_CHARS:
            out.append((heading, current))
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph[: PASSAGE_CHARS * 2]
    if current:
        out.append((heading, current))
    return out


class _HTMLText(HTMLParser):
    """Collects readable text from HTML, turning h1–h3 into Markdown headings."""

    _SKIP = frozenset({"script", "style", "nav", "footer", "head"})
    _BLOCK = frozenset({"p", "div", "li", "br", "tr", "section", "article", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in ("h1", "h2", "h3"):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self.out.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in ("h1", "h2", "h3"):
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(data)


def html_to_markdown(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.out))
