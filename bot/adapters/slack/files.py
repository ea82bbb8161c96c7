"""Files shared with a question: images downloaded for the model, everything else named in a note.

Private Slack files need the bot token (Authorization: Bearer); without access Slack answers
with a redirect or its HTML sign-in page, which becomes a note rather than a broken image.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

from bot.adapters.slack.events import SlackFile
from bot.conversation import IMAGE_MEDIA_TYPES, MAX_IMAGE_BYTES, Image, checked_image

log = logging.getLogger(__name__)

# The Messages API's 5 MB per image applies to the base64 text, which is 4/3 of the bytes.
MAX_IMAGE_DOWNLOAD = MAX_IMAGE_BYTES
MAX_IMAGES = 5
DOWNLOAD_TIMEOUT = 20.0
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Attachments:
    images: tuple[Image, ...] = ()
    notes: tuple[str, ...] = ()


def unreadable(file: SlackFile) -> str | None:
    """Why this file cannot go to the model (a note for the prompt), or None to download it."""
    if file.mimetype not in IMAGE_MEDIA_TYPES:
        return f"{file.name} was attached but I can't read that type of file"
    if file.size > MAX_IMAGE_DOWNLOAD:
        return too_large(file.name)
    if not file.url:
        return no_access(file.name)
    return None


def too_large(name: str) -> str:
    limit = MAX_IMAGE_DOWNLOAD / (1024 * 1024)
    return f"{name} is too large for me to look at (images up to {limit:.2f} MB)"


def no_access(name: str) -> str:
    return f"{name} was attached but I couldn't open it (no access to the file)"


class FileFetcher:
    """Downloads shared images with the bot token, only from Slack's own hosts."""

    def __init__(self, http: httpx.AsyncClient, token: str, api_url: str) -> None:
        self.http = http
        self._token = token
        self._api_host = urlparse(api_url).hostname or ""

    async def fetch(self, files: Sequence[SlackFile]) -> Attachments:
        """Images to show the model and notes about every file it will not see."""
        notes: list[str] = []
        wanted: list[SlackFile] = []
        for file in files:
            reason = unreadable(file)
            if reason is None and len(wanted) >= MAX_IMAGES:
                reason = f"{file.name} was attached but I only look at {MAX_IMAGES} images at once"
            if reason is None:
                wanted.append(file)
            else:
                notes.append(reason)
        results = await asyncio.gather(*(self.download(file) for file in wanted))
        images = tuple(r for r in results if isinstance(r, Image))
        notes.extend(r for r in results if isinstance(r, str))
        return Attachments(images, tuple(notes))

    def trusted(self, url: str) -> bool:
        """The token only goes to Slack (or the configured API host, for local test servers)."""
        host = urlparse(url).hostname or ""
        return host == self._api_host or host == "slack.com" or host.endswith(".slack.com")

    async def download(self, file: SlackFile) -> Image | str:
        """The image, or a note saying why the model will not see it."""
        if not self.trusted(file.url):
            return no_access(file.name)
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self.http.stream(
                "GET", file.url, headers=headers, timeout=DOWNLOAD_TIMEOUT
            ) as response:
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if response.status_code != 200 or kind == "text/html":
                    return no_access(file.name)  # Slack's sign-in page, or a redirect to it
                data = await _read_capped(response)
        except httpx.HTTPError as error:
            log.warning("downloading a shared file failed: %s", type(error).__name__)
            return f"{file.name} was attached but downloading it failed"
        if data is None:
            return too_large(file.name)
        return checked_image(file.name, data)


async def _read_capped(response: httpx.Response) -> bytes | None:
    """The body, or None as soon as it grows past the image limit."""
    data = bytearray()
    async for chunk in response.aiter_bytes(_CHUNK):
        data.extend(chunk)
        if len(data) > MAX_IMAGE_DOWNLOAD:
            return None
    return bytes(data)
