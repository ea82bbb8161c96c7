"""Every SQL statement of the knowledge base: sources, documents, passages, vectors, search.

Runs on the database thread (called through SQLiteThread.call), so nothing here awaits.
Kept in one module so the knowledge base can move to another engine in one place.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from bot.docs_parse import PATH_SEPARATOR, Section
from bot.retrieval import is_release_notes, phrase


@dataclass(frozen=True)
class IndexReport:
    """What one refresh of a source did."""

    added: int
    updated: int
    removed: int
    unchanged: int
    passages: int
    failed: int = 0  # pages that could not be fetched (they keep their old passages)
    skipped: tuple[str, ...] = ()  # files not indexed, each "path: why"
    problems: tuple[str, ...] = ()  # pages that could not be fetched, with the reason


@dataclass(frozen=True)
class SourceRow:
    id: str
    kind: str  # "folder" or "site"
    added_at: float
    refreshed_at: float
    problem: str  # why the last refresh failed, "" when it did not
    documents: int
    passages: int


@dataclass(frozen=True)
class DocumentRow:
    source: str
    path: str
    title: str
    url: str
    passages: int


@dataclass(frozen=True)
class Known:
    """What the index holds of one document, to tell whether it changed."""

    sha256: str
    etag: str
    last_modified: str


@dataclass(frozen=True)
class Hit:
    """A section found by search (its passages are fetched for the ones kept)."""

    section_id: int
    path: str
    heading: str
    anchor: str
    digest: str  # the text's length and start: tells a repeat (overlapping sources) apart
    url: str
    score: float  # higher is better
    release_notes: bool = False  # from a changelog or a release announcement


# A section's text can be a whole unstructured file: searches read only this much of it.
_DIGEST = "length(s.text) || ':' || substr(s.text, 1, 300)"


class KbTables:
    """The knowledge base's tables in one SQLite database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sources ------------------------------------------------------------------------

    def add_source(self, source: str, kind: str) -> bool:
        """Register a source; False when it was there already."""
        if self.db.execute("SELECT 1 FROM kb_sources WHERE id = ?", [source]).fetchone():
            return False
        self.db.execute(
            "INSERT INTO kb_sources (id, kind, added_at, refreshed_at, problem)"
            " VALUES (?, ?, ?, 0, '')",
            [source, kind, time.time()],
        )
        return True

    def sources(self) -> list[SourceRow]:
        rows = self.db.execute(
            "SELECT s.id, s.kind, s.added_at, s.refreshed_at, s.problem, count(DISTINCT d.id),"
            " count(p.id) FROM kb_sources s LEFT JOIN kb_documents d ON d.source = s.id"
            " LEFT JOIN kb_passages p ON p.document_id = d.id GROUP BY s.id ORDER BY s.id"
        ).fetchall()
        return [SourceRow(r[0], r[1], r[2], r[3], r[4] or "", int(r[5]), int(r[6])) for r in rows]

    def refreshed(self, source: str, problem: str = "") -> None:
        """Note a refresh: its time when it worked, else only what went wrong."""
        if problem:
            self.db.execute("UPDATE kb_sources SET problem = ? WHERE id = ?", [problem, source])
        else:
            self.db.execute("UPDATE kb_sources SET refreshed_at = ?, problem = '' WHERE id = ?",
                            [time.time(), source])

    def remove_source(self, source: str) -> int:
        """Forget a source and everything indexed from it; the number of documents removed."""
        with self.db.atomic():
            paths = [r[0] for r in self.db.execute(
                "SELECT path FROM kb_documents WHERE source = ?", [source]).fetchall()]
            self.remove_documents(source, paths)
            self.db.execute("DELETE FROM kb_sources WHERE id = ?", [source])
        return len(paths)

    # --- documents ----------------------------------------------------------------------

    def known(self, source: str) -> dict[str, Known]:
        rows = self.db.execute(
            "SELECT path, sha256, etag, last_modified FROM kb_documents WHERE source = ?",
            [source],
        ).fetchall()
        return {r[0]: Known(r[1], r[2] or "", r[3] or "") for r in rows}

    def replace_document(
        self, source: str, path: str, title: str, url: str, known: Known,
        sections: Sequence[Section],
    ) -> None:
        """Write one document's passages in place of its old ones."""
        db = self.db
        with db.atomic():
            self._delete_passages(source, [path])
            db.execute(
                "INSERT INTO kb_documents (source, path, title, url, sha256, etag,"
                " last_modified, indexed_at, release_notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (source, path) DO UPDATE SET title = excluded.title,"
                " url = excluded.url, sha256 = excluded.sha256, etag = excluded.etag,"
                " last_modified = excluded.last_modified, indexed_at = excluded.indexed_at,"
                " release_notes = excluded.release_notes",
                [source, path, title, url, known.sha256, known.etag, known.last_modified,
                 time.time(),
                 int(is_release_notes([s.heading for s in sections], PATH_SEPARATOR))],
            )
            doc_id = db.execute(
                "SELECT id FROM kb_documents WHERE source = ? AND path = ?", [source, path]
            ).fetchone()[0]
            # A section is the passages that share a heading and anchor: search ranks it
            # whole, then shows the passage of it that covers the question best.
            grouped: dict[tuple[str, str], list[str]] = {}
            for section in sections:
                grouped.setdefault((section.heading, section.anchor), []).append(section.text)
            for (heading, anchor), texts in grouped.items():
                section_id = db.conn.execute(
                    "INSERT INTO kb_sections (document_id, heading, anchor, text)"
                    " VALUES (?, ?, ?, ?)", [doc_id, heading, anchor, "\n\n".join(texts)],
                ).lastrowid
                db.conn.executemany(
                    "INSERT INTO kb_passages (document_id, section_id, heading, anchor, text)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(doc_id, section_id, heading, anchor, text) for text in texts],
                )

    def remove_documents(self, source: str, paths: Sequence[str]) -> None:
        with self.db.atomic():
            self._delete_passages(source, paths)
            for path in paths:
                self.db.execute(
                    "DELETE FROM kb_documents WHERE source = ? AND path = ?", [source, path]
                )

    def _delete_passages(self, source: str, paths: Sequence[str]) -> None:
        for path in paths:
            ids = "SELECT p.id FROM kb_passages p JOIN kb_documents d ON d.id = p.document_id" \
                  " WHERE d.source = ? AND d.path = ?"
            self.db.execute(f"DELETE FROM kb_vectors WHERE passage_id IN ({ids})", [source, path])
            self.db.execute(f"DELETE FROM kb_passages WHERE id IN ({ids})", [source, path])
            self.db.execute(
                "DELETE FROM kb_sections WHERE document_id IN"
                " (SELECT id FROM kb_documents WHERE source = ? AND path = ?)", [source, path])

    def documents(self) -> list[DocumentRow]:
        rows = self.db.execute(
            "SELECT d.source, d.path, d.title, d.url, count(p.id) FROM kb_documents d"
            " LEFT JOIN kb_passages p ON p.document_id = d.id GROUP BY d.id"
            " ORDER BY d.source, d.path"
        ).fetchall()
        return [DocumentRow(r[0], r[1], r[2], r[3] or "", int(r[4])) for r in rows]

    def clear(self) -> int:
        with self.db.atomic():
            count = int(self.db.execute("SELECT count(*) FROM kb_documents").fetchone()[0])
            for table in ("kb_vectors", "kb_passages", "kb_sections", "kb_documents",
                          "kb_sources"):
                self.db.execute(f"DELETE FROM {table}")
        return count

    # --- search -------------------------------------------------------------------------

    def bm25(self, query: str, limit: int, heading_weight: float) -> list[Hit]:
        """Sections matching the FTS5 query, best first; score = -bm25 (higher is better)."""
        rows = self.db.execute(
            f"SELECT s.id, d.path, s.heading, s.anchor, {_DIGEST}, d.url,"
            " -bm25(kb_sections_fts, ?, 1.0) AS score, d.release_notes"
            " FROM kb_sections_fts f JOIN kb_sections s ON s.id = f.rowid"
            " JOIN kb_documents d ON d.id = s.document_id"
            " WHERE kb_sections_fts MATCH ? ORDER BY score DESC LIMIT ?",
            [heading_weight, query, limit],
        ).fetchall()
        return [Hit(int(r[0]), r[1], r[2], r[3] or "", r[4], r[5] or "", float(r[6]),
                    bool(r[7])) for r in rows]

    def sections_of(self, passage_ids: Sequence[int]) -> dict[int, Hit]:
        """The section of each of these passages (score 0), for passages found by meaning."""
        found: dict[int, Hit] = {}
        for start in range(0, len(passage_ids), 500):
            chunk = list(passage_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT p.id, s.id, d.path, s.heading, s.anchor, {_DIGEST}, d.url,"
                " d.release_notes"
                " FROM kb_passages p JOIN kb_sections s ON s.id = p.section_id"
                f" JOIN kb_documents d ON d.id = s.document_id WHERE p.id IN ({marks})",
                chunk,
            ).fetchall()
            found.update({int(r[0]): Hit(int(r[1]), r[2], r[3], r[4] or "", r[5], r[6] or "",
                                         0.0, bool(r[7])) for r in rows})
        return found

    def first_passages(self, section_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Each section's first passage and how many it has (a section can be a whole
        unstructured file: its passages are not read here)."""
        if not section_ids:
            return {}
        marks = ",".join("?" * len(section_ids))
        return {int(sid): (int(first), int(count)) for sid, first, count in self.db.execute(
            f"SELECT section_id, min(id), count(*) FROM kb_passages WHERE section_id IN ({marks})"
            " GROUP BY section_id", list(section_ids)).fetchall()}

    def best_passages(self, query: str, section_ids: Sequence[int]) -> dict[int, int]:
        """For each of these sections, its passage that matches the query best (BM25), for
        the sections where any does."""
        if not section_ids or not query:
            return {}
        marks = ",".join("?" * len(section_ids))
        best: dict[int, int] = {}
        for section_id, pid in self.db.execute(
                "SELECT p.section_id, p.id FROM kb_passages_fts f"
                " JOIN kb_passages p ON p.id = f.rowid WHERE kb_passages_fts MATCH ?"
                f" AND p.section_id IN ({marks}) ORDER BY bm25(kb_passages_fts)",
                [query, *section_ids]).fetchall():
            best.setdefault(int(section_id), int(pid))
        return best

    def passage_texts(self, passage_ids: Sequence[int]) -> dict[int, str]:
        if not passage_ids:
            return {}
        marks = ",".join("?" * len(passage_ids))
        return {int(pid): text for pid, text in self.db.execute(
            f"SELECT id, text FROM kb_passages WHERE id IN ({marks})", list(passage_ids))}

    def phrases(self, words: Sequence[str]) -> tuple[int, dict[str, tuple[str, int]]]:
        """How many sections there are, and for each word the FTS5 phrase to search it by
        and how many sections match it: the word as written when the docs use it, else any
        of its common forms ("invoice" for docs that only say "invoices")."""
        total = int(self.db.execute("SELECT count(*) FROM kb_sections").fetchone()[0])
        found: dict[str, tuple[str, int]] = {}
        for word in words if total else ():  # no docs: nothing to match
            if not word.replace('"', ""):
                continue
            exact = phrase(word)
            count = self._matches(exact)
            if not count:
                loose = phrase(word, loose=True)
                count = self._matches(loose)
                exact = loose if count else exact
            found[word] = (exact, count)
        return total, found

    def _matches(self, fts_phrase: str) -> int:
        return int(self.db.execute(
            "SELECT count(*) FROM kb_sections_fts WHERE kb_sections_fts MATCH ?", [fts_phrase]
        ).fetchone()[0])

    def present(self, section_id: int, phrases: Sequence[str]) -> set[str]:
        """Which of these FTS5 phrases the section contains."""
        return {p for p in phrases if self.db.execute(
            "SELECT 1 FROM kb_sections_fts WHERE kb_sections_fts MATCH ? AND rowid = ?",
            [p, section_id]).fetchone()}

    def sections(self) -> list[tuple[str, str, str]]:
        """(document path, heading path, whole text) of every section."""
        rows = self.db.execute(
            "SELECT d.path, s.heading, s.text FROM kb_sections s"
            " JOIN kb_documents d ON d.id = s.document_id ORDER BY s.id"
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # --- vectors ------------------------------------------------------------------------

    def missing_vectors(self, model: str) -> list[tuple[int, str]]:
        """(id, heading + text) of passages with no vector from `model`."""
        rows = self.db.execute(
            "SELECT p.id, p.heading, p.text FROM kb_passages p LEFT JOIN kb_vectors v"
            " ON v.passage_id = p.id AND v.model = ? WHERE v.passage_id IS NULL",
            [model],
        ).fetchall()
        return [(int(r[0]), f"{r[1]}\n{r[2]}") for r in rows]

    def save_vectors(self, model: str, vectors: Sequence[tuple[int, bytes]]) -> None:
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO kb_vectors (passage_id, model, vector) VALUES (?, ?, ?)",
                [(pid, model, blob) for pid, blob in vectors],
            )

    def vectors(self, model: str) -> list[tuple[int, bytes]]:
        rows = self.db.execute(
            "SELECT passage_id, vector FROM kb_vectors WHERE model = ? ORDER BY passage_id",
            [model],
        ).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]
