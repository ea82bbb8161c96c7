"""`supportbot check`: the effective configuration with secrets masked, and each service reached."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path

from bot.config import Secret, Settings
from bot.database import StoreError
from bot.errors import LLMError
from bot.logs import redact
from bot.models import profile
from bot.platforms import PlatformEntry, enabled
from bot.prompts import PromptBook, shipped_prompts
from bot.providers import LOCAL_CREDENTIALS, Provider
from bot.runtime import model_client, open_store
from bot.shared import SharedError, SharedLimits


def describe(settings: Settings) -> list[str]:
    """One line per setting; secrets shown masked, paths as paths."""
    lines = []
    for field in fields(settings):
        value = getattr(settings, field.name)
        if is_dataclass(value) and not isinstance(value, Secret):  # the provider: a line each
            lines += [f"  {field.name + '.' + inner.name:<24} {_shown(getattr(value, inner.name))}"
                      for inner in fields(value)]
            continue
        if field.name == "db_url" and value is not None:
            value = settings.db_shown  # the URL is useful to see; its password is not shown
        if field.name == "redis_url" and value:
            value = settings.redis_shown
        lines.append(f"  {field.name:<24} {_shown(value)}")
    return lines


def _shown(value: object) -> str:
    return str(value) if isinstance(value, Secret | Path) else repr(value)


async def run_checks(settings: Settings) -> int:
    """Print the configuration and try every configured service; 0 when all are reachable."""
    print("configuration:")
    print("\n".join(describe(settings)))
    model = profile(settings.model)
    if not model.known:
        print(f"note: {settings.model} is not a model supportbot knows; cost will be 'unknown'")
    ok = _check_prompts(settings)
    ok = await _check_store(settings) and ok
    ok = await _check_redis(settings) and ok
    ok = await _check_model(settings) and ok
    warned = False
    for platform in enabled(settings):
        passed, warnings = await _check_platform(platform, settings)
        ok, warned = passed and ok, warned or warnings
    if ok and warned:
        print("checks passed, with warnings: see the WARNING lines above")
    else:
        print("all checks passed" if ok else "some checks failed")
    return 0 if ok else 1


def _check_prompts(settings: Settings) -> bool:
    folder = settings.prompts_dir or shipped_prompts()
    source = "SUPPORTBOT_PROMPTS" if settings.prompts_dir else "shipped with supportbot"
    try:
        PromptBook.load(folder)
    except OSError as error:
        print(f"prompts: FAILED — cannot read {folder}: {error.strerror}")
        return False
    print(f"prompts: {folder} ({source})")
    return True


async def _check_store(settings: Settings) -> bool:
    try:
        store = await open_store(settings)
    except StoreError as error:
        print(f"database: FAILED — {error}")
        return False
    await store.close()
    if settings.db_url is None:
        print(f"database: {settings.db_path} (SQLite, opened and migrated)")
    else:
        print(f"database: {settings.db_shown} (PostgreSQL, reached and migrated); "
              f"docs index: {settings.db_path.resolve()} (SUPPORTBOT_KB_INDEX)")
    return True


async def _check_redis(settings: Settings) -> bool:
    if not settings.redis_url:
        if settings.db_url is not None:
            print("redis: not set — fine for one instance; several instances on this database "
                  "need SUPPORTBOT_REDIS_URL to share Slack's and Discord's limits")
        return True
    try:
        shared = await SharedLimits.open(settings, "check")
    except SharedError as error:
        print(f"redis: FAILED — {error}")
        return False
    await shared.close()
    print(f"redis: {settings.redis_shown} reached (keys under {settings.redis_prefix})")
    return True


async def _check_model(settings: Settings) -> bool:
    for name in settings.provider.unused:
        print(f"model: WARNING — {name} is set but SUPPORTBOT_PROVIDER is "
              f"{settings.provider.name}, so it is not used (forgot SUPPORTBOT_PROVIDER?)")
    client = model_client(settings)
    if client is None:
        print("model: ANTHROPIC_API_KEY is not set; answers come from the knowledge base only")
        return True
    provider = client.provider
    try:
        name = await client.check()
        print(f"model: reached {provider.name} at {provider.base_url} — {name}")
        return True
    except LLMError as error:
        print(f"model: FAILED — {redact(error.message, settings.secrets())}"
              f"{_status(error)}{_hint(error, provider, settings.model)}")
        return False
    finally:
        await client.aclose()


def _status(error: LLMError) -> str:
    local = error.error_type == LOCAL_CREDENTIALS or error.status == 0
    return "" if local else f" (HTTP {error.status})"


def _hint(error: LLMError, provider: Provider, model: str) -> str:
    """Which settings to look at for this refusal."""
    if error.status == 0:
        return ("; check SUPPORTBOT_PROVIDER_BASE_URL" if provider.name != "anthropic"
                else "; check ANTHROPIC_BASE_URL and SUPPORTBOT_PROVIDER_BASE_URL") + \
            " and the network"
    if error.status == 404:
        return (f"; check SUPPORTBOT_MODEL ({provider.model_id(model)}) and the endpoint "
                f"{provider.base_url} (SUPPORTBOT_PROVIDER_BASE_URL); {provider.hint()}")
    return f"; {provider.hint()}" if error.status in (401, 403) else ""


async def _check_platform(platform: PlatformEntry, settings: Settings) -> tuple[bool, bool]:
    """(reached, warned) for one platform."""
    try:
        lines = await platform.check(settings)
    except Exception as error:
        print(f"{platform.name}: FAILED — {redact(str(error), settings.secrets())} "
              f"(see {platform.setup})")
        return False, False
    for line in lines:
        print(f"{platform.name}: {line}")
    return True, any(line.startswith("WARNING") for line in lines)
