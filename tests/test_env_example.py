"""Every variable the code reads is documented in .env.example, and the file loads as is."""

import re
from pathlib import Path

from bot.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


def documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, re.M))


def read_by_code() -> set[str]:
    source = "".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    return set(re.findall(r'"((?:SUPPORTBOT|ANTHROPIC|SLACK|DISCORD)_[A-Z_]+|PORT|LOG_LEVEL)"',
                          source))


def test_every_variable_is_documented() -> None:
    missing = read_by_code() - documented()
    assert not missing, f"not in .env.example: {sorted(missing)}"


def test_the_example_file_is_a_valid_configuration() -> None:
    settings = load_settings({}, dotenv_path=ROOT / ".env.example")
    assert settings.model == "claude-haiku-5-5"
    assert not settings.slack_enabled and not settings.discord_enabled
