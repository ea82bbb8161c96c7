"""How a question becomes a search, and how rankings combine (pure).

BM25 finds passages that share the question's words; a semantic ranking finds ones that say
the same thing in other words; reciprocal rank fusion merges the two without having to make
their scores comparable. A follow-up ("and in async?") borrows the words of the thread's
earlier questions, so it searches for what the thread is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
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
    found: dict[str, None] = {}  # ordered, and a set for the look-up (long texts too)
    for word in _WORD.findall(text.lower()):
        word = word.strip("'-_")
        if len(word) >= 2 and word not in STOPWORDS:
            found.setdefault(word)
    return list(found)


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
    return " OR ".join(phrase(w) for w in words if w.replace('"', ""))


def phrase(word: str, loose: bool = False) -> str:
    """The word as an FTS5 query term: as written, or (loose) any of its common English forms,
    so that "invoice" finds "invoices" and "configuring" finds "configure"."""
    word = word.replace('"', "")
    if not loose:
        return f'"{word}"'
    return "(" + " OR ".join(f'"{form}"' for form in forms(word)) + ")"


# Endings taken off to find a word's other forms, longest first; a stem keeps four letters.
_ENDINGS = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "s", "e", "y")
_ADDED = ("", "s", "es", "e", "ed", "ing", "y", "ies", "ion", "ions", "ation", "ations")


def forms(word: str) -> list[str]:
    """The word and its common English forms ("proxy": proxies, proxied...), the word first."""
    found = dict.fromkeys([word, *(word + end for end in ("s", "es"))])
    root = stem(word)
    found.update(dict.fromkeys(root + end for end in _ADDED))
    return list(found)


def stem(word: str) -> str:
    """The word without a common English ending ("proxies" -> "prox")."""
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            return word[: -len(ending)]
    return word


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
