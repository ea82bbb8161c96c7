"""HTTP shapes the fake Discord REST side shares: constants, errors, bodies, responses."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.discord_payloads import FLAG_EPHEMERAL, Json, error_body, form_error

API_PREFIX = "/api/v10"
WRITES = frozenset({"POST", "PATCH", "DELETE"})
CHANNEL_MESSAGE_ROUTES = frozenset(
    {"/channels/{channel_id}/messages", "/channels/{channel_id}/messages/{message_id}"}
)
DEFAULT_ROUTE_LIMIT = (50, 1.0)  # other routes: roughly Discord's global 50 requests/second
# Flags a bot may set on a new message: ephemeral, suppress embeds, suppress notifications.
KEPT_CREATE_FLAGS = FLAG_EPHEMERAL | (1 << 2) | (1 << 12)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RequestBody:
    """A request body: JSON (or a multipart's payload_json) plus uploaded files."""

    json: Any
    files: tuple[tuple[str, str, bytes], ...] = ()


class DiscordError(Exception):
    """Raised by a handler to answer with Discord's JSON error body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


BODY = web.RequestKey("discord_body", RequestBody)


def json_response(status: int, data: Any) -> web.Response:
    # Exactly "application/json", no charset: discord.py parses JSON only on that exact header.
    body = json.dumps(data).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


def fail(status: int, code: int, message: str) -> DiscordError:
    return DiscordError(status, error_body(code, message))


def invalid(path: tuple[str, ...], code: str, message: str) -> DiscordError:
    """A 400 Invalid Form Body (50035) pointing at the offending field."""
    return DiscordError(400, form_error(path, code, message))


def unknown(kind: str, code: int) -> DiscordError:
    return fail(404, code, f"Unknown {kind}")


async def read_body(request: web.Request) -> RequestBody:
    """Parse JSON or multipart/form-data (payload_json + files[n]) the way Discord accepts it."""
    if request.content_type == "multipart/form-data":
        payload: Any = None
        files: list[tuple[str, str, bytes]] = []
        for name, part in (await request.post()).items():
            if isinstance(part, web.FileField):
                files.append((name, part.filename, part.file.read()))
            elif name == "payload_json":
                payload = json.loads(str(part))
        return RequestBody(payload, tuple(files))
    if not request.can_read_body:
        return RequestBody(None)
    try:
        return RequestBody(await request.json())
    except ValueError as exc:
        raise fail(400, 50109, "The request body contains invalid JSON.") from exc


def snowflake(value: str, kind: str, code: int) -> int:
    if not value.isdigit():
        raise unknown(kind, code)
    return int(value)
