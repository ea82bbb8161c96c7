"""`supportbot check`: the effective configuration with secrets masked, and each service reached."""

from __future__ import annotations

import importlib
from dataclasses import fields

from bot.config import Secret, Settings
from bot.llm import LLMError
from bot.logs import redact
from bot.models import profile
from bot.runtime import model_client


def describe(settings: Settings) -> list[str]:
    """One line per setting; secrets shown masked."""
    lines = []
    for field in fields(settings):
        value = getattr(settings, field.name)
        shown = str(value) if isinstance(value, Secret) else repr(value)
        lines.append(f"  {field.name:<24} {shown}")
    return lines


async def run_checks(settings: Settings) -> int:
    """Print the configuration and try every configured service; 0 when all are reachable."""
    print("configuration:")
    print("\n".join(describe(settings)))
    model = profile(settings.model)
    if not model.known:
        print(f"note: {settings.model} is not a model supportbot knows; cost will be 'unknown'")
    ok = await _check_model(settings)
    for name, enabled in (("slack", settings.slack_enabled), ("discord", settings.discord_enabled)):
        if enabled:
            ok = await _check_platform(name, settings) and ok
    print("all checks passed" if ok else "some checks failed")
    return 0 if ok else 1


async def _check_model(settings: Settings) -> bool:
    client = model_client(settings)
    if client is None:
        print("model: ANTHROPIC_API_KEY is not set; answers come from the knowledge base only")
        return True
    try:
        name = await client.check()
        print(f"model: reached {settings.anthropic_base_url} — {settings.model} ({name})")
        return True
    except LLMError as error:
        print(f"model: FAILED — {redact(error.message, settings.secrets())} (HTTP {error.status})")
        return False
    finally:
        await client.aclose()


async def _check_platform(name: str, settings: Settings) -> bool:
    module = importlib.import_module(f"bot.adapters.{name}")
    try:
        for line in await module.check(settings):
            print(f"{name}: {line}")
        return True
    except Exception as error:
        print(f"{name}: FAILED — {redact(str(error), settings.secrets())}")
        return False
