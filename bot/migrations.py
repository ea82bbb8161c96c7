"""The database schema, grown by small named migrations applied when the store opens."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.docs_parse import PATH_SEPARATOR
from bot.retrieval import is_release_notes

migrations = Migrations("supportbot")


@migrations(name="m001_conversations")
def m001_conversations(db: Database) -> None:
    db["conversations"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "platform": str,
            "workspace": str,
            "channel": str,
            "thread": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
    )
    # position orders a thread: 2·(question id) for a question, +1 for its answer, so an
    # answer always sorts right after its question even when later questions arrived first.
    db["messages"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "conversation_id": str,
            "position": int,
            "role": str,
            "text": str,
            "tokens": int,
            "author_id": str,
            "image_count": int,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["messages"].create_index(  # type: ignore[union-attr]
        ["conversation_id", "position"], index_name="idx_messages_position"
    )
    db["events"].create(  # type: ignore[union-attr]
        {"key": str, "conversation_id": str, "message_id": int, "created_at": float}, pk="key"
    )


@migrations(name="m002_replies_and_values")
def m002_replies_and_values(db: Database) -> None:
    db["replies"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "conversation_id": str,
            "question_id": int,
            "answer_id": int,
            "model": str,
            "stop_reason": str,
            "outcome": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_creation_input_tokens": int,
            "cache_read_input_tokens": int,
            "cost_usd": float,
            "first_text_ms": float,
            "total_ms": float,
            "created_at": float,
        },
        pk="id",
    )
    db["replies"].create_index(["created_at"])  # type: ignore[union-attr]
    db["kv"].create({"key": str, "value": str}, pk="key")  # type: ignore[union-attr]


@migrations(name="m003_knowledge")
def m003_knowledge(db: Database) -> None:
    db["kb_documents"].create(  # type: ignore[union-attr]
        {"path": str, "title": str, "sha256": str, "indexed_at": float}, pk="path"
    )
    db["kb_passages"].create(  # type: ignore[union-attr]
        {"id": int, "document_path": str, "heading": str, "text": str},
        pk="id",
        foreign_keys=[("document_path", "kb_documents", "path")],
    )
    db["kb_passages"].create_index(["document_path"])  # type: ignore[union-attr]
    db["kb_passages"].enable_fts(  # type: ignore[union-attr]
        ["heading", "text"], create_triggers=True, tokenize="porter"
    )


@migrations(name="m004_reply_journal")
def m004_reply_journal(db: Database) -> None:
    # One row per reply that has not ended yet, written with its question before the reply's
    # first platform write, so a restart finds every reply a crash left unfinished.
    db["reply_journal"].create(  # type: ignore[union-attr]
        {
            "question_id": int,
            "conversation_id": str,
            "event_id": str,
            "author_id": str,
            "author_name": str,
            "arrival": str,
            "place_kind": str,
            "place": str,  # JSON object: what the surface needs to find its messages again
            "pages": str,  # JSON list of [platform id, text last given]
            "asked_at": float,
            "updated_at": float,
        },
        pk="question_id",
        foreign_keys=[("question_id", "messages", "id")],
    )


@migrations(name="m005_knowledge_sources")
def m005_knowledge_sources(db: Database) -> None:
    # The index is derived from its sources, so it is rebuilt rather than converted: `run`
    # indexes SUPPORTBOT_KB again, and folders added by hand are added again with `kb add`.
    db["kb_passages"].disable_fts()  # type: ignore[union-attr]
    db["kb_passages"].drop()
    db["kb_documents"].drop()
    db["kb_sources"].create(  # type: ignore[union-attr]
        {"id": str, "kind": str, "added_at": float, "refreshed_at": float, "problem": str},
        pk="id",
    )
    db["kb_documents"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "source": str,  # a folder's absolute path or a site's URL, as kb_sources.id
            "path": str,  # relative to the folder, or the page URL
            "title": str,
            "url": str,  # where a reader finds it: front matter, canonical link, or the page
            "sha256": str,
            "etag": str,
            "last_modified": str,
            "indexed_at": float,
        },
        pk="id",
        foreign_keys=[("source", "kb_sources", "id")],
    )
    db["kb_documents"].create_index(["source", "path"], unique=True)  # type: ignore[union-attr]
    db["kb_passages"].create(  # type: ignore[union-attr]
        {"id": int, "document_id": int, "heading": str, "anchor": str, "text": str},
        pk="id",
        foreign_keys=[("document_id", "kb_documents", "id")],
    )
    db["kb_passages"].create_index(["document_id"])  # type: ignore[union-attr]
    db["kb_passages"].enable_fts(  # type: ignore[union-attr]
        ["heading", "text"], create_triggers=True, tokenize="porter"
    )
    # One row per passage when the semantic signal is installed: float32 unit vectors.
    db["kb_vectors"].create(  # type: ignore[union-attr]
        {"passage_id": int, "model": str, "vector": bytes}, pk="passage_id"
    )


@migrations(name="m006_docs_gaps")
def m006_docs_gaps(db: Database) -> None:
    # Questions the docs did not answer (the gate declined them, or the model said so): the
    # team's list of pages to write, with what the search found closest.
    db["docs_gaps"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "conversation_id": str,
            "question": str,
            "reason": str,  # "gate" or "model"
            "confidence": float,  # the best passage's share of the question's weight
            "closest": str,  # JSON list of [source, heading, score]
            "created_at": float,
        },
        pk="id",
    )
    db["docs_gaps"].create_index(["created_at"])  # type: ignore[union-attr]


@migrations(name="m007_caps_and_lifecycle")
def m007_caps_and_lifecycle(db: Database) -> None:
    # A question past its asker's hourly cap is kept (so a redelivery is still answered once)
    # but not counted against the cap: `admitted` is 0 for it.
    db["messages"].add_column("admitted", int, not_null_default=1)  # type: ignore[union-attr]
    db["messages"].create_index(  # type: ignore[union-attr]
        ["author_id", "created_at"], index_name="idx_messages_author"
    )
    # Who asked a question the docs did not answer, so `forget --user` finds it.
    db["docs_gaps"].add_column("author_id", str, not_null_default="")  # type: ignore[union-attr]


@migrations(name="m008_handoffs_and_feedback")
def m008_handoffs_and_feedback(db: Database) -> None:
    # A conversation handed to a person: the bot stays quiet in it until it is given back.
    db["handoffs"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "conversation_id": str,
            "state": str,  # "open" while a person handles it, then "resolved"
            "asker_id": str,
            "reason": str,  # button / command / words / dont_know
            "posted": int,  # 1 when the summary reached the escalation channel
            "summary": str,  # JSON: where the summary was posted, for its resolve button
            "requested_at": float,
            "resolved_at": float,
            "resolved_by": str,  # "person" or "bot" (a person's ✅, a button, /resolve)
        },
        pk="id",
    )
    db["handoffs"].create_index(["conversation_id", "state"])  # type: ignore[union-attr]
    # One vote per person per reply, changeable; the reply is known by its question's id.
    db["feedback"].create(  # type: ignore[union-attr]
        {
            "question_id": int,
            "voter": str,  # PLATFORM:ID
            "vote": int,  # +1 or -1
            "comment": str,
            "model": str,
            "sources": str,  # JSON list of the passages the reply was given
            "created_at": float,
            "updated_at": float,
        },
        pk=("question_id", "voter"),
    )
    db["replies"].add_column("sources", str, not_null_default="[]")  # type: ignore[union-attr]


@migrations(name="m009_handoff_links_and_drafts")
def m009_handoff_links_and_drafts(db: Database) -> None:
    # The thread's link as the platform gave it, for `kb suggest` drafts.
    db["handoffs"].add_column("link", str, not_null_default="")  # type: ignore[union-attr]
    # Draft pages `kb suggest` wrote, so `forget --user` can delete theirs.
    db["kb_drafts"].create(  # type: ignore[union-attr]
        {"path": str, "conversation_id": str, "asker_id": str, "created_at": float}, pk="path"
    )


@migrations(name="m010_first_sign")
def m010_first_sign(db: Database) -> None:
    # When the reply's first visible sign (placeholder, typing, "thinking…") was shown.
    db["replies"].add_column("first_sign_ms", float)  # type: ignore[union-attr]


@migrations(name="m011_reply_lookups")
def m011_reply_lookups(db: Database) -> None:
    # A reply is found by its question (votes, summaries, the previous outcome) and by its
    # answer (export) on every click and every doubtful question; a summary by its place.
    db["replies"].create_index(["question_id"])  # type: ignore[union-attr]
    db["replies"].create_index(["answer_id"])  # type: ignore[union-attr]
    db["handoffs"].create_index(["summary"])  # type: ignore[union-attr]


@migrations(name="m012_release_notes")
def m012_release_notes(db: Database) -> None:
    # Changelogs and release announcements rank below the guides (knowledge.py); documents
    # indexed before this are classified from their stored headings, so nothing is re-read.
    db["kb_documents"].add_column("release_notes", int, not_null_default=0)  # type: ignore[union-attr]
    rows = db.execute("SELECT document_id, heading FROM kb_passages").fetchall()
    headings: dict[int, list[str]] = {}
    for document_id, heading in rows:
        headings.setdefault(int(document_id), []).append(heading)
    flagged = [(i,) for i, found in headings.items()
               if is_release_notes(found, PATH_SEPARATOR)]
    db.conn.executemany("UPDATE kb_documents SET release_notes = 1 WHERE id = ?", flagged)


@migrations(name="m013_sections")
def m013_sections(db: Database) -> None:
    # Search ranks whole sections, words as written (no stemming); with up to 32 question
    # words this moved Scrapy's hit@5 from 0.86 to 0.96 and pytest's from 0.77 to 0.80
    # (README, "Finding the right page"). Passages stay what is shown and embedded; each now
    # names its section. Existing indexes are converted here, nothing is read again.
    db["kb_sections"].create(  # type: ignore[union-attr]
        {"id": int, "document_id": int, "heading": str, "anchor": str, "text": str},
        pk="id",
        foreign_keys=[("document_id", "kb_documents", "id")],
    )
    db["kb_sections"].create_index(["document_id"])  # type: ignore[union-attr]
    db["kb_sections"].enable_fts(  # type: ignore[union-attr]
        ["heading", "text"], create_triggers=True, tokenize="unicode61"
    )
    db["kb_passages"].add_column("section_id", int)  # type: ignore[union-attr]
    grouped: dict[tuple[int, str, str], list[tuple[int, str]]] = {}
    for pid, document_id, heading, anchor, text in db.execute(
            "SELECT id, document_id, heading, anchor, text FROM kb_passages ORDER BY id"):
        grouped.setdefault((int(document_id), heading, anchor or ""), []).append((pid, text))
    for (document_id, heading, anchor), rows in grouped.items():
        section_id = db.conn.execute(
            "INSERT INTO kb_sections (document_id, heading, anchor, text) VALUES (?, ?, ?, ?)",
            [document_id, heading, anchor, "\n\n".join(text for _, text in rows)],
        ).lastrowid
        db.conn.executemany("UPDATE kb_passages SET section_id = ? WHERE id = ?",
                            [(section_id, pid) for pid, _ in rows])
    db["kb_passages"].create_index(["section_id"])  # type: ignore[union-attr]


@migrations(name="m014_instances")
def m014_instances(db: Database) -> None:
    # Each running instance's heartbeat lease, and which instance writes each unfinished reply:
    # a reply whose instance stopped beating is taken over by a live one (bot/instance_rows.py).
    db["instances"].create(  # type: ignore[union-attr]
        {"id": str, "host": str, "pid": int, "started_at": float, "beat_at": float,
         "expires_at": float},
        pk="id",
    )
    db["reply_journal"].add_column("owner", str, not_null_default="")  # type: ignore[union-attr]
