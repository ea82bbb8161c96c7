"""SECURITY.md keeps up with the code: every credential the bot reads is in it, with where
to make a new one, and the limits it quotes are the ones the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

from bot.adapters.slack.app import MAX_BODY
from bot.adapters.slack.events import SIGNATURE_MAX_AGE
from bot.turnstile import MAX_QUESTION_CHARS

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "SECURITY.md").read_text(encoding="utf-8")


def test_every_credential_read_by_the_config_is_in_the_rotation_table() -> None:
    config = (ROOT / "bot" / "config.py").read_text(encoding="utf-8")
    credentials = set(re.findall(r'\.token\("([A-Z_]+)"', config))
    assert {"ANTHROPIC_API_KEY", "SLACK_BOT_TOKEN", "DISCORD_BOT_TOKEN"} <= credentials
    table = DOC[DOC.index("## Changing each credential"):DOC.index("## Threat model")]
    assert not [name for name in credentials if f"`{name}`" not in table]


def test_the_limits_it_quotes_are_the_code_s() -> None:
    assert f"{MAX_QUESTION_CHARS:,} characters" in DOC
    assert MAX_BODY == 1024 * 1024 and "over 1 MB" in DOC
    assert SIGNATURE_MAX_AGE == 300 and "five minutes" in DOC
    assert "Report a vulnerability" in DOC
