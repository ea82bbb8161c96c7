"""Logging that never shows a secret: configured values and token-shaped strings are masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

_TOKEN_SHAPES = re.compile(
    r"(xox[abposr]-[\w-]+|xapp-[\w-]+|sk-ant-[\w-]+"
    r"|[MNO][\w-]{23,27}\.[\w-]{6}\.[\w-]{27,40}"  # Discord bot token
    r"|(?<=/webhooks/)\d+/[\w.-]{20,}"  # interaction webhook token in a URL
    r"|(?<=/interactions/)\d+/[\w.-]{20,}"
    r"|\bticket=[\w%.-]+)"  # a Socket Mode URL's one-use connection ticket, name and all
)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks every known secret and anything shaped like a token."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return _TOKEN_SHAPES.sub("[redacted]", text)


LEVEL_TESTED = ("slack_sdk.web.async_base_client", "bot.adapters.slack.bolt")


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """Log to stderr at `level`; chatty HTTP libraries only from WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiohttp.access", "discord.http", "discord.gateway",
                  "botocore", "google.auth", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # slack_sdk's web client and Bolt test their logger's own level, not the level it
    # inherits, before building a debug line: left unset (0) they format every request's
    # headers and every response's body for nothing. Theirs get the root's level.
    for exact in LEVEL_TESTED:
        logging.getLogger(exact).setLevel(root.level)
