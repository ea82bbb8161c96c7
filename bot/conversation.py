"""Plain frozen values shared by every platform: who asked what, where, and what came back."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Platform(StrEnum):
    SLACK = "slack"
    DISCORD = "discord"
    CONSOLE = "console"


class Arrival(StrEnum):
    """How a message reached the bot; adapters pick one, the responder does not care."""

    MENTION = "mention"
    DM = "dm"
    SLASH = "slash"
    FOLLOW_UP = "follow_up"


Role = Literal["user", "assistant"]
DM_WORKSPACE = "@dm"  # the workspace of a conversation that belongs to no server (Discord DMs)

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# The Messages API caps an image at 5 MB of base64 text, which is 3.75 MB of image bytes.
MAX_IMAGE_BYTES = 5 * 1024 * 1024 * 3 // 4


@dataclass(frozen=True)
class ConversationKey:
    """Where a support thread lives: platform, workspace or guild, channel, thread."""

    platform: Platform
    workspace: str
    channel: str
    thread: str

    @property
    def id(self) -> str:
        return f"{self.platform.value}:{self.workspace}:{self.channel}:{self.thread}"


@dataclass(frozen=True)
class Image:
    media_type: str
    data: bytes


# How each image type the model reads begins: the bytes decide, not the name or the type a
# platform declared (a text file named .png would fail the whole request at the API).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniffed_type(data: bytes) -> str | None:
    """The image type the bytes are, among those the model reads; None for anything else."""
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def checked_image(name: str, data: bytes) -> Image | str:
    """The attachment as an image of the type its bytes show, or a note for the model that
    it is not an image it can read."""
    media_type = sniffed_type(data)
    if media_type is None:
        return f"{name} was attached but is not a PNG, JPEG, GIF or WebP image"
    return Image(media_type, data)


@dataclass(frozen=True)
class Incoming:
    """One question from a person, already translated out of its platform's wire format."""

    key: ConversationKey
    author_id: str
    text: str
    event_id: str
    arrival: Arrival
    author_name: str = ""
    images: tuple[Image, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "report.pdf was attached but cannot be read"


@dataclass(frozen=True)
class Turn:
    """One message of a conversation's history, with its token estimate from write time."""

    role: Role
    text: str
    tokens: int
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class RecordedQuestion:
    """A question as stored: its message id and its place in the thread."""

    message_id: int
    position: int
    wait_seconds: float = 0.0  # > 0: past the asker's hourly cap; they may ask again then
    ready_at: float = 0.0  # past the cap: the Unix time of that moment, the same for every
    # question the asker sends until then (so "please wait" can be said once per wait)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass(frozen=True)
class StreamEnd:
    """The end of a model's answer: why it stopped, what it used, which model answered."""

    stop_reason: str
    usage: Usage
    model: str
    price_factor: float = 1.0  # the endpoint's premium over list price (providers.py)


@dataclass(frozen=True)
class Passage:
    """A piece of the team's docs, found for the current question."""

    source: str  # the document's path in its folder, or the page's URL
    heading: str  # the heading path: "Guide › Listeners › Acknowledging requests"
    text: str
    url: str = ""  # where a reader finds it (with the section's anchor), when known
    score: float = 0.0  # BM25 relevance of its words to the question, higher is better


@dataclass(frozen=True)
class Prompt:
    """Model-independent request content; the model client adds the model's own parameters."""

    system: str  # stable across requests, so it can be cached
    context: str  # this question's docs passages ("" when none)
    turns: tuple[Turn, ...]
    max_tokens: int


@dataclass(frozen=True)
class Answer:
    """A finished reply: exactly what the user saw, and what it cost."""

    text: str
    model: str
    stop_reason: str
    usage: Usage
    cost_usd: float | None
    first_text_ms: float | None = None
    # answered / failed / interrupted / refused / kb_only / not_in_docs / over_budget /
    # rate_limited / handed_over
    outcome: str = "answered"
    sources: tuple[tuple[str, str], ...] = ()  # (title, link or file) of the passages given


@dataclass(frozen=True)
class PageRef:
    """One platform message of a reply: its id there, and the text it was last given."""

    id: str
    text: str = ""


@dataclass(frozen=True)
class Place:
    """Where a reply is shown, in terms its platform can find again after a restart."""

    kind: str  # which surface made it, e.g. "slack-thread" or "console"
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, kind: str, **fields: str) -> Place:
        return cls(kind, tuple(sorted(fields.items())))

    def get(self, name: str, default: str = "") -> str:
        return dict(self.fields).get(name, default)
