"""How a question becomes a search, and how rankings combine (pure).

BM25 finds passages that share the question's words; a semantic ranking finds ones that say
the same thing in other words; reciprocal rank fusion merges the two without having to make
their scores comparable. A follow-up ("and in async?") borrows the words of the thread's
earlier questions, so it searches for what the thread is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[\w][\w'-]*", re.UNICODE)
STOPWORDS = frozenset(
    "the a an and or but if of to in on at for with from by is are was were be been do does "
    "did how what why when where who which can could should would i you we my our your it "
    "its this that these those me us not no yes have has had get got am there their them "
    "they he she his her so as into than then just also any some all about will way use "
    "using want need make sure still like does doesn't don't can't cannot i'm it's".split()
)
# Words of a question searched for. Users describe a problem at length; at 16 the words
# that named it were often cut (Scrapy set: hit@5 0.89 -> 0.96 at 32).
MAX_TERMS = 32
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)
# A heading that names a release: "8.4.2 (2025-09-03)", "Scrapy 2.11.0", "v1.2.3", "1.4 (2019)".
_RELEASE = re.compile(r"(?<![\w.])v?\d+\.\d+\.\d+(?![\w.])|"
                      r"(?<![\w.])\d+\.\d+(?![\w.]).*\b(?:19|20)\d\d\b")
RELEASE_HEADING_WORDS = 6  # longer headings with a version in them are prose ("Migrating...")


def is_release_notes(headings: Sequence[str], separator: str) -> bool:
    """Whether a document is release notes (a changelog, a release announcement): most of its
    sections sit under a heading that names a version. Such pages mention every feature in a
    line or two, so they match many questions while the guide that answers them says more."""
    if not headings:
        return False
    named = sum(1 for heading in headings if any(
        _RELEASE.search(part) and len(part.split()) <= RELEASE_HEADING_WORDS
        for part in heading.split(separator)))
    return named * 2 > len(headings)


_RELEASE_WORDS = frozenset("version versions release releases released changelog".split())
_VERSION = re.compile(r"^v?\d+(?:\.\d+)+$")


def asks_about_releases(words: Sequence[str]) -> bool:
    """Whether the question is about versions ("which release added dark mode?", "what
    changed in 2.4?"): then release notes are what answers it."""
    return any(w in _RELEASE_WORDS or _VERSION.match(w) for w in words)


def terms(text: str) -> list[str]:
    """The question's meaningful words, lower case, first occurrence order."""
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        word = word.strip("'-_")
        if len(word) < 2 or word in STOPWORDS or word in found:
            continue
        found.append(word)
    return found


FOLLOW_UP_WORDS = 3  # a question with more search words than this stands on its own


def folded(question: str, earlier: Sequence[str], max_terms: int = MAX_TERMS) -> list[str]:
    """The question's words, then, for a short follow-up ("and as PDF?"), words of the
    thread's earlier questions (newest first) while there is room: it searches for what the
    thread is about. A question that names its own subject is searched as it is."""
    words = terms(question)[:max_terms]
    if len(words) > FOLLOW_UP_WORDS:
        return words
    for previous in reversed(earlier[-2:]):
        for word in terms(previous):
            if len(words) >= max_terms:
                return words
            if word not in words:
                words.append(word)
    return words


def fts_query(words: Iterable[str]) -> str:
    """An FTS5 query matching any of the words (quoted, so no word is FTS syntax)."""
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words if w.replace('"', ""))


def rrf(
    rankings: Sequence[Sequence[int]], weights: Sequence[float] = (), k: int = RRF_K
) -> dict[int, float]:
    """Reciprocal rank fusion: each ranking gives weight / (k + rank) to the ids it ranks."""
    fused: dict[int, float] = {}
    for index, ranking in enumerate(rankings):
        weight = weights[index] if index < len(weights) else 1.0
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


@dataclass(frozen=True)
class Ranked:
    id: int
    document: str
    score: float


def diversified(ranked: Sequence[Ranked], limit: int, per_document: int) -> list[Ranked]:
    """The best `limit` results with at most `per_document` from one document, so one long
    page cannot crowd out the page that answers; the rest fill up if too few remain."""
    picked: list[Ranked] = []
    spare: list[Ranked] = []
    counts: dict[str, int] = {}
    for item in ranked:
        if counts.get(item.document, 0) < per_document:
            counts[item.document] = counts.get(item.document, 0) + 1
            picked.append(item)
        else:
            spare.append(item)
        if len(picked) == limit:
            return picked
    return picked + spare[: limit - len(picked)]


def coverage(words: Sequence[str], text: str, idf: Mapping[str, float]) -> float:
    """The share of the question's weight (by IDF) that the text contains, matching words by
    their first five letters so "exporting" finds "export"."""
    if not words:
        return 0.0
    have = {w[:5] for w in terms(text)}
    total = sum(idf.get(w, 1.0) for w in words)
    found = sum(idf.get(w, 1.0) for w in words if w[:5] in have)
    return found / total if total else 0.0
