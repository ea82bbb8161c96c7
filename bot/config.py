"""Settings, read once from the environment and `.env` into one typed, frozen object.

A missing or malformed value fails at start with the variable's name and what to do.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from dotenv import dotenv_values

from bot.models import DEFAULT_FALLBACK_MODEL, DEFAULT_MODEL, profile

T = TypeVar("T")
EFFORTS = ("low", "medium", "high", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class Secret:
    """A credential whose repr and str never show the value."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return mask(self.value)

    def __repr__(self) -> str:
        return f"Secret({mask(self.value)})"

    def __bool__(self) -> bool:
        return bool(self.value)


def mask(value: str) -> str:
    """Show only enough of a secret to recognise which one it is."""
    if not value:
        return "(not set)"
    if len(value) <= 8:
        return "****"
    return f"{value[:4]}…{value[-2:]}"


PROVIDERS = ("anthropic", "bedrock", "vertex")


@dataclass(frozen=True)
class ProviderSettings:
    """SUPPORTBOT_PROVIDER and the variables each cloud's own tools read (providers.py)."""

    name: str = "anthropic"
    base_url: str = ""  # SUPPORTBOT_PROVIDER_BASE_URL: any provider at another endpoint
    region: str = ""  # AWS_REGION / AWS_DEFAULT_REGION, or CLOUD_ML_REGION / GOOGLE_CLOUD_LOCATION
    project: str = ""  # GOOGLE_CLOUD_PROJECT (or ANTHROPIC_VERTEX_PROJECT_ID)
    aws_profile: str = ""  # AWS_PROFILE
    bedrock_api_key: Secret = Secret("")  # AWS_BEARER_TOKEN_BEDROCK
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, from the environment or
    # .env (botocore reads only the process environment, so they are handed over).
    aws_keys: tuple[str, Secret, Secret] | None = None
    google_key_file: str = ""  # GOOGLE_APPLICATION_CREDENTIALS when it comes from .env
    unused: tuple[str, ...] = ()  # cloud variables set for a provider that is not chosen


@dataclass(frozen=True)
class Settings:
    anthropic_api_key: Secret
    anthropic_base_url: str
    model: str
    fallback_model: str | None
    max_tokens: int
    temperature: float
    effort: str
    history_tokens: int
    db_path: Path  # the SQLite file: the store's, or beside PostgreSQL the docs index's
    db_url: Secret | None  # a postgresql:// URL (its password never shown), or None: SQLite
    kb_sources: tuple[str, ...]  # folders (absolute paths) and docs-site URLs
    kb_refresh_minutes: float  # `run` refreshes the sources this often (0: only at start)
    kb_semantic: bool  # fuse the optional semantic signal into search (needs the extra)
    prompts_dir: Path | None  # None: the prompts shipped in the package
    reply_timeout: float
    resume_minutes: float
    max_concurrent: int
    session_idle_hours: float
    slack_bot_token: Secret
    slack_app_token: Secret
    slack_signing_secret: Secret
    slack_api_url: str
    slack_native_streaming: bool
    slack_http_host: str
    port: int
    discord_bot_token: Secret
    discord_api_url: str
    discord_gateway_url: str
    discord_guild_id: int | None
    discord_message_content: bool
    log_level: str
    user_rate: int = 20  # questions per person per hour (0: no cap)
    daily_budget_usd: float | None = None  # past it, docs-only answers until midnight UTC
    allowed_channels: frozenset[str] = frozenset()  # empty: every channel it is invited to
    allowed_workspaces: frozenset[str] = frozenset()  # Slack team ids / Discord guild ids
    retention_days: float | None = None  # messages older than this are purged daily
    escalation_slack_channel: str = ""  # where handovers are posted (channel id)
    escalation_discord_channel: str = ""
    escalation_mention: str = ""  # Slack user group id (S…) or Discord role id
    escalation_contact: str = "Please contact the team directly."
    provider: ProviderSettings = ProviderSettings()
    redis_url: Secret = Secret("")  # shared limits across instances (empty: in-process ones)
    redis_prefix: str = "supportbot:"  # keys' prefix: several deployments can share a Redis
    discord_shards: ShardPlan | None = None  # None: one connection, shard 0 of 1
    metrics_port: int | None = None  # /metrics, /healthz, /readyz when PORT serves no HTTP
    lease_seconds: float = 15.0  # an instance silent this long is taken for dead
    slack_updates_per_minute: int = 45  # chat.update across the workspace (Tier 3: 50+)

    @property
    def redis_shown(self) -> str:
        url = self.redis_url.value
        if _redis_user_is_password(url):  # redis://PASSWORD@host, the old form
            parts = urlsplit(url)
            return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
        return without_password(url)

    @property
    def db_shown(self) -> str:
        """Where the store is, fit for a log line: the file, or the URL without a password."""
        return str(self.db_path) if self.db_url is None else without_password(self.db_url.value)

    @property
    def model_ready(self) -> bool:
        """A model is configured: an Anthropic key, or a cloud provider (its credentials are
        resolved on the first request, as the cloud's own tools do)."""
        return self.provider.name != "anthropic" or bool(self.anthropic_api_key)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def discord_enabled(self) -> bool:
        return bool(self.discord_bot_token)

    def secrets(self) -> list[str]:
        """Every credential value, for the log redactor."""
        values = (
            self.anthropic_api_key,
            self.slack_bot_token,
            self.slack_app_token,
            self.slack_signing_secret,
            self.discord_bot_token,
        )
        keys = self.provider.aws_keys
        extra = (self.provider.bedrock_api_key, *(keys[1:] if keys else ()))
        found = [s.value for s in (*values, *extra) if s.value]
        for url in (self.db_url, self.redis_url):  # a password, wherever the URL puts it
            if url:
                found += [p for p in url_passwords(url.value) if p]
        if self.redis_url and _redis_user_is_password(self.redis_url.value):
            found.append(urlsplit(self.redis_url.value).username or "")
        return [f for f in found if f]


@dataclass(frozen=True)
class ShardPlan:
    """SUPPORTBOT_DISCORD_SHARDS: `auto` (Discord's recommended count, all in this process), or
    shards first..last of count (`0-3/8`)."""

    auto: bool
    first: int = 0
    last: int = 0
    count: int = 1

    @property
    def ids(self) -> list[int]:
        return list(range(self.first, self.last + 1))

    def __str__(self) -> str:
        return "auto" if self.auto else f"{self.first}-{self.last}/{self.count}"


class _Reader:
    """Reads one variable at a time from a merged mapping, with typed parsers."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str, default: str = "") -> str:
        return self.env.get(name, default).strip()

    def parsed(self, name: str, default: T, parse: Callable[[str], T], want: str) -> T:
        text = self.raw(name)
        if not text:
            return default
        try:
            return parse(text)
        except ValueError:
            raise ConfigError(f'{name} must be {want}, got "{text}"') from None

    def positive_int(self, name: str, default: int) -> int:
        return self.parsed(name, default, _positive_int, "a positive integer")

    def flag(self, name: str, default: bool) -> bool:
        return self.parsed(name, default, _flag, "true or false")

    def url(self, name: str, default: str) -> str:
        return self.parsed(name, default, _http_url, "an http:// or https:// URL")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(text: str) -> str:
            if text.lower() not in choices and text.upper() not in choices:
                raise ValueError(text)
            return text.upper() if text.upper() in choices else text.lower()

        return self.parsed(name, default, parse, "one of " + " / ".join(choices))

    def token(self, name: str, prefix: str = "") -> Secret:
        text = self.raw(name)
        if text and prefix and not text.startswith(prefix):
            # Never echo the value: it is a credential.
            raise ConfigError(
                f"{name} must start with {prefix!r}; copy it again from the app's settings page"
            )
        return Secret(text)


def _positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _http_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https", "ws", "wss") or not parsed.netloc:
        raise ValueError(text)
    return text


def _temperature(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value


def _bounded(low: float, high: float, low_allowed: bool = False) -> Callable[[str], float]:
    """A parser of numbers above `low` (or from it) up to `high`; nan is never in range."""

    def parse(text: str) -> float:
        value = float(text)
        if not ((low <= value) if low_allowed else (low < value)) or not value <= high:
            raise ValueError(text)
        return value

    return parse


_hours = _bounded(0, float("inf"))
_positive_seconds = _bounded(0, 3600)
_minutes = _bounded(0, 7 * 24 * 60, low_allowed=True)
_days = _bounded(0, 36_500)


def _dollars(text: str) -> float:
    return _bounded(0, 999_999.99)(text.strip().strip("$").strip())


def _count(text: str) -> int:
    value = int(text.replace("_", ""))
    if not 0 <= value <= 100_000:
        raise ValueError(text)
    return value


# A Slack id (C0123ABCD, T0123ABCD, S0123ABCD: a capital letter, then capitals and digits,
# at least one digit) or a Discord snowflake (digits).
_ID = re.compile(r"[A-Z](?=[A-Z0-9]*[0-9])[A-Z0-9]{1,20}|[0-9]{15,21}")
_ID_HINT = "Slack ids look like C0123ABCD (channels), T0123ABCD (teams), S0123ABCD (user " \
    "groups); Discord ids are long numbers (Developer Mode → Copy ID)"


def _ids(r: _Reader, name: str, slack_kinds: str) -> frozenset[str]:
    """A comma-separated list of platform ids: Discord snowflakes, or Slack ids whose first
    letter is one of `slack_kinds` (C channel, G private channel, D DM, T team, E grid).
    Slack's are upper-case, so a lower-case copy is taken."""
    ids = [part.strip().upper() for part in r.raw(name).split(",") if part.strip()]
    for text in ids:
        if not _ID.fullmatch(text) or not (text.isdigit() or text[0] in slack_kinds):
            raise ConfigError(f'{name} takes ids separated by commas, got "{text}": {_ID_HINT}')
    return frozenset(ids)


def _one_id(r: _Reader, name: str, slack_kinds: str) -> str:
    text = r.raw(name).strip().upper()
    if text and (not _ID.fullmatch(text) or not (text.isdigit() or text[0] in slack_kinds)):
        raise ConfigError(f'{name} takes one channel id, got "{text}": {_ID_HINT}')
    return text


def _mentions(r: _Reader, name: str) -> str:
    """A Slack user group id (S…) and/or a Discord role id (digits), comma-separated."""
    ids = [part.strip().upper() for part in r.raw(name).split(",") if part.strip()]
    slack = [i for i in ids if i.startswith("S") and _ID.fullmatch(i)]
    discord = [i for i in ids if i.isdigit() and _ID.fullmatch(i)]
    if len(slack) > 1 or len(discord) > 1 or len(slack) + len(discord) != len(ids):
        raise ConfigError(f"{name} must be a Slack user group id (S0123ABCD, from the group's "
                          "page) and/or a Discord role id (a long number), separated by a comma")
    return ",".join(slack + discord)


def _sentence(r: _Reader, name: str) -> str:
    """A short plain sentence the bot says to customers (no markup, no mentions)."""
    text = " ".join(r.raw(name).split())
    if len(text) > 300 or "@everyone" in text or "@here" in text or any(c in text for c in "<>"):
        raise ConfigError(f"{name} must be one short plain sentence (300 characters at most, "
                          "no @everyone/@here, no <…> mentions or links in angle brackets)")
    return text


def _provider(r: _Reader) -> ProviderSettings:
    """SUPPORTBOT_PROVIDER with the variables its cloud's tools use; what each provider
    needs is checked when its client is made (providers.py), at start."""
    name = r.choice("SUPPORTBOT_PROVIDER", "anthropic", PROVIDERS)
    base_url = r.url("SUPPORTBOT_PROVIDER_BASE_URL", "")
    unused = tuple(var for var in _CLOUD_VARIABLES[name] if r.raw(var))
    if name == "bedrock":
        key_id, secret = r.raw("AWS_ACCESS_KEY_ID"), r.token("AWS_SECRET_ACCESS_KEY")
        if bool(key_id) != bool(secret):
            raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
        found = ProviderSettings(
            name, base_url, region=_aws_region(r), aws_profile=r.raw("AWS_PROFILE"),
            bedrock_api_key=r.token("AWS_BEARER_TOKEN_BEDROCK"),
            aws_keys=(key_id, secret, r.token("AWS_SESSION_TOKEN")) if key_id else None,
            unused=unused)
        if not found.bedrock_api_key:
            _require_extra("botocore", "bedrock", "signing with AWS credentials")
        return found
    if name == "vertex":
        region = r.raw("CLOUD_ML_REGION") or r.raw("GOOGLE_CLOUD_LOCATION")
        if not region:
            raise ConfigError("CLOUD_ML_REGION (or GOOGLE_CLOUD_LOCATION) must be set for "
                              "SUPPORTBOT_PROVIDER=vertex, such as us-east5 or global")
        if not _GOOGLE_LOCATION.match(region):
            raise ConfigError(f'CLOUD_ML_REGION must be a location such as us-east5, eu or '
                              f'global, got "{region}"')
        project = r.raw("GOOGLE_CLOUD_PROJECT") or r.raw("ANTHROPIC_VERTEX_PROJECT_ID")
        if not project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT (or ANTHROPIC_VERTEX_PROJECT_ID) must be "
                              "set for SUPPORTBOT_PROVIDER=vertex (the Google Cloud project id)")
        key_file = r.raw("GOOGLE_APPLICATION_CREDENTIALS")
        _require_extra("google.auth", "vertex", "Google credentials")
        return ProviderSettings(name, base_url, region=region, project=project,
                                google_key_file=key_file if key_file and (
                                    "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ) else "",
                                unused=unused)
    return ProviderSettings(name, base_url, unused=unused)


# Variables that only mean something to one provider: set while another is chosen, they are
# most likely a forgotten SUPPORTBOT_PROVIDER, and `check` says so.
_CLOUD_VARIABLES = {
    "anthropic": ("AWS_BEARER_TOKEN_BEDROCK", "CLOUD_ML_REGION", "GOOGLE_CLOUD_PROJECT"),
    "bedrock": ("CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID"),
    "vertex": ("AWS_BEARER_TOKEN_BEDROCK",),
}
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_GOOGLE_LOCATION = re.compile(r"^[a-z]+(-[a-z]+\d*)?$")


def _aws_region(r: _Reader) -> str:
    """AWS_REGION, AWS_DEFAULT_REGION, or the region of the AWS profile (as the AWS tools
    read it); a ConfigError naming AWS_REGION when none is found or it is not a region."""
    region = r.raw("AWS_REGION") or r.raw("AWS_DEFAULT_REGION")
    if not region and importlib.util.find_spec("botocore") is not None:
        import botocore.session
        from botocore.exceptions import BotoCoreError

        try:
            region = botocore.session.Session(
                profile=r.raw("AWS_PROFILE") or None).get_config_variable("region") or ""
        except BotoCoreError:
            region = ""
    if not region:
        raise ConfigError("AWS_REGION must be set for SUPPORTBOT_PROVIDER=bedrock "
                          "(the Bedrock endpoint's region, such as us-east-1)")
    if not _AWS_REGION.match(region):
        raise ConfigError(f'AWS_REGION must be a region such as us-east-1, got "{region}"')
    return region


def _require_extra(module: str, extra: str, why: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package is missing
        found = False
    if not found:
        raise ConfigError(f"SUPPORTBOT_PROVIDER={extra} needs the {extra} extra for {why}: "
                          f"pip install 'supportbot[{extra}]'")


def _snowflake(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = Path(".env")
) -> Settings:
    """Settings from the process environment over `.env` (the environment wins)."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return _settings_from(_Reader(merged))


def _settings_from(r: _Reader) -> Settings:
    model = r.raw("SUPPORTBOT_MODEL") or DEFAULT_MODEL
    fallback_text = r.env.get("SUPPORTBOT_FALLBACK_MODEL", DEFAULT_FALLBACK_MODEL).strip()
    max_tokens = r.positive_int("SUPPORTBOT_MAX_TOKENS", 1024)
    limit = profile(model).max_output
    if profile(model).known and max_tokens > limit:
        raise ConfigError(
            f"SUPPORTBOT_MAX_TOKENS must be at most {limit} for {model}, got {max_tokens}"
        )
    settings = Settings(
        anthropic_api_key=r.token("ANTHROPIC_API_KEY"),
        anthropic_base_url=r.url("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
        model=model,
        fallback_model=fallback_text or None,
        max_tokens=max_tokens,
        temperature=r.parsed("SUPPORTBOT_TEMPERATURE", 0.3, _temperature, "a number from 0 to 1"),
        effort=r.choice("SUPPORTBOT_EFFORT", "low", EFFORTS),
        history_tokens=r.positive_int("SUPPORTBOT_HISTORY_TOKENS", 20_000),
        db_path=_db_path(r),
        db_url=_db_url(r),
        kb_sources=_kb_sources(r),
        kb_refresh_minutes=_kb_refresh(r),
        kb_semantic=_kb_semantic(r),
        prompts_dir=_prompts_dir(r),
        reply_timeout=r.parsed(
            "SUPPORTBOT_REPLY_TIMEOUT", 60.0, _positive_seconds, "a positive number of seconds"
        ),
        resume_minutes=r.parsed(
            "SUPPORTBOT_RESUME_MINUTES", 10.0, _minutes, "a number of minutes (0 or more)"
        ),
        max_concurrent=r.positive_int("SUPPORTBOT_MAX_CONCURRENT", 64),
        session_idle_hours=r.parsed(
            "SUPPORTBOT_SESSION_IDLE_HOURS", 24.0, _hours, "a positive number of hours"
        ),
        slack_bot_token=r.token("SLACK_BOT_TOKEN", "xoxb-"),
        slack_app_token=r.token("SLACK_APP_TOKEN", "xapp-"),
        slack_signing_secret=r.token("SLACK_SIGNING_SECRET"),
        slack_api_url=r.url("SLACK_API_URL", "https://slack.com/api/"),
        slack_native_streaming=r.flag("SLACK_NATIVE_STREAMING", False),
        slack_http_host=r.raw("SLACK_HTTP_HOST") or "0.0.0.0",
        port=r.parsed("PORT", 3000, _port, "a port number from 1 to 65535"),
        discord_bot_token=r.token("DISCORD_BOT_TOKEN"),
        discord_api_url=r.url("DISCORD_API_URL", "https://discord.com/api/v10"),
        discord_gateway_url=r.url("DISCORD_GATEWAY_URL", "wss://gateway.discord.gg"),
        discord_guild_id=r.parsed("DISCORD_GUILD_ID", None, _snowflake, "a Discord server id"),
        discord_message_content=r.flag("DISCORD_MESSAGE_CONTENT", False),
        log_level=r.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
        user_rate=r.parsed("SUPPORTBOT_USER_RATE", 20, _count, "a whole number of questions "
                           "per person per hour from 0 (no cap) to 100000"),
        daily_budget_usd=r.parsed("SUPPORTBOT_DAILY_BUDGET_USD", None, _dollars,
                                  "a positive amount of US dollars with a dot for cents, such "
                                  "as 5 or 12.50"),
        allowed_channels=_ids(r, "SUPPORTBOT_ALLOWED_CHANNELS", "CG"),
        allowed_workspaces=_ids(r, "SUPPORTBOT_ALLOWED_WORKSPACES", "TE"),
        retention_days=r.parsed("SUPPORTBOT_RETENTION_DAYS", None, _days,
                                "a positive number of days"),
        escalation_slack_channel=_one_id(r, "SUPPORTBOT_ESCALATION_SLACK_CHANNEL", "CG"),
        escalation_discord_channel=_one_id(r, "SUPPORTBOT_ESCALATION_DISCORD_CHANNEL", ""),
        escalation_mention=_mentions(r, "SUPPORTBOT_ESCALATION_MENTION"),
        escalation_contact=_sentence(r, "SUPPORTBOT_ESCALATION_CONTACT")
        or "Please contact the team directly.",
        provider=_provider(r),
        redis_url=_redis_url(r),
        redis_prefix=r.parsed("SUPPORTBOT_REDIS_PREFIX", "supportbot:", _key_prefix,
                              "letters, digits and _ - . : only (up to 64)"),
        discord_shards=r.parsed("SUPPORTBOT_DISCORD_SHARDS", None, _shards,
                                "auto, or the shards this process runs out of how many, such "
                                "as 0-3/8 (shards 0 to 3 of 8) or 5/8"),
        metrics_port=r.parsed("SUPPORTBOT_METRICS_PORT", None, _port,
                              "a port number from 1 to 65535"),
        slack_updates_per_minute=r.parsed(
            "SUPPORTBOT_SLACK_UPDATES_PER_MINUTE", 45, _per_minute,
            "a whole number of chat.update calls per minute from 1 to 10000"),
        lease_seconds=r.parsed("SUPPORTBOT_LEASE_SECONDS", 15.0, _bounded(2.0, 600.0),
                               "a number of seconds from 2 to 600"),
    )
    _check_slack_mode(settings)
    return settings


_SHARDS = re.compile(r"^(\d+)(?:-(\d+))?/(\d+)$")
MAX_SHARDS = 100_000


def _shards(text: str) -> ShardPlan:
    if text.lower() == "auto":
        return ShardPlan(auto=True)
    found = _SHARDS.match(text.replace(" ", ""))
    if found is None:
        raise ValueError(text)
    first, count = int(found.group(1)), int(found.group(3))
    last = int(found.group(2)) if found.group(2) else first
    if not 0 <= first <= last < count <= MAX_SHARDS:
        raise ValueError(text)
    return ShardPlan(False, first, last, count)


def _per_minute(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise ValueError(text)
    return value


def _redis_user_is_password(url: str) -> bool:
    """redis://SECRET@host: a user part alone is often a password written the old way; it
    is hidden like one."""
    parts = urlsplit(url)
    return parts.username is not None and parts.password is None


def _key_prefix(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", text):
        raise ValueError(text)
    return text if text.endswith(":") else text + ":"


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_url(r: _Reader) -> Secret:
    """SUPPORTBOT_REDIS_URL, checked for its form; never echoed (it may hold a password)."""
    text = r.raw("SUPPORTBOT_REDIS_URL")
    if text and not text.lower().startswith(REDIS_SCHEMES):
        raise ConfigError("SUPPORTBOT_REDIS_URL must be a redis://HOST:6379/0 URL (rediss:// "
                          "for TLS, unix:///path for a socket)")
    if text.lower().startswith(("redis://", "rediss://")):
        parts = urlsplit(text)
        if parts.netloc.count("@") > 1:
            raise ConfigError("SUPPORTBOT_REDIS_URL: percent-encode @ in the password (%40)")
        try:
            parts.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError:
            raise ConfigError(f"SUPPORTBOT_REDIS_URL={without_password(text)}: the port must "
                              "be a number from 1 to 65535") from None
        if not parts.hostname:
            raise ConfigError(f"SUPPORTBOT_REDIS_URL={without_password(text)}: no host")
    return Secret(text)


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError(text)
    return value


def _kb_sources(r: _Reader) -> tuple[str, ...]:
    """SUPPORTBOT_KB: folders and docs-site URLs, separated by commas."""
    sources: list[str] = []
    for text in (r.raw("SUPPORTBOT_KB") or "").split(","):
        text = text.strip()
        if not text:
            continue
        if text.startswith(("http://", "https://")):
            sources.append(text)
            continue
        if "://" in text:
            raise ConfigError(f'SUPPORTBOT_KB: "{text}" is neither a folder nor an http(s) URL')
        path = Path(text).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f'SUPPORTBOT_KB must be a folder of docs or a docs-site URL (several: separate '
                f'them with commas), got "{text}" (no such folder)'
            )
        sources.append(str(path.resolve()))
    return tuple(dict.fromkeys(sources))


def _kb_semantic(r: _Reader) -> bool:
    wanted = r.flag("SUPPORTBOT_KB_SEMANTIC", False)
    if wanted and importlib.util.find_spec("wordllama") is None:
        raise ConfigError(
            "SUPPORTBOT_KB_SEMANTIC=true needs the semantic extra: "
            "pip install 'supportbot[semantic]'"
        )
    return wanted


def _kb_refresh(r: _Reader) -> float:
    text = r.raw("SUPPORTBOT_KB_REFRESH_MINUTES") or "60"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value == 0 or 1 <= value <= 7 * 24 * 60):  # nan fails both
        raise ConfigError(
            f'SUPPORTBOT_KB_REFRESH_MINUTES must be 0 (only at start) or minutes from 1 to '
            f'10080, got "{text}"'
        )
    return value


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_QUERY_PASSWORD = re.compile(r"(?i)(^|&)(password)=([^&]*)")


def is_postgres_url(text: str) -> bool:
    return text.lower().startswith(POSTGRES_SCHEMES)


def url_passwords(url: str) -> list[str]:
    """The passwords a database URL carries (in its user part, or as `password=`)."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    found += [m.group(3) for m in _QUERY_PASSWORD.finditer(parts.query)]
    return [unquote(p) for p in found if p] + [p for p in found if p]


def without_password(url: str) -> str:
    """A database URL fit for a log line or an error message: its password, in the user part
    or as a `password=` parameter, is ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    # From password= to the end: an unencoded & in the password would show its rest.
    found = _QUERY_PASSWORD.search(parts.query)
    query = parts.query[:found.start()] + f"{found.group(1)}password=***" if found else \
        parts.query
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_LIBPQ_WORDS = re.compile(r"(?i)(^|\s)(host|hostaddr|dbname|user|password|port)\s*=")


def _db_value(r: _Reader) -> str:
    """SUPPORTBOT_DB as given. What looks like a connection of another kind is refused, and
    never echoed (it may hold a password): a URL of another scheme (JDBC, SQLAlchemy's), a
    libpq keyword string, a URL whose password needs percent-encoding."""
    text = r.raw("SUPPORTBOT_DB")
    form = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
    if "://" in text and not is_postgres_url(text):
        scheme = text.split("://", 1)[0]
        hint = " (write postgresql:// instead)" if "postgres" in scheme.lower() else ""
        raise ConfigError(f"SUPPORTBOT_DB is a URL supportbot does not use{hint}; give a SQLite "
                          f"file path or a {form} URL")
    if _LIBPQ_WORDS.search(text):
        raise ConfigError(f"SUPPORTBOT_DB looks like a libpq connection string; write it as a "
                          f"{form} URL")
    if is_postgres_url(text) and urlsplit(text).netloc.count("@") > 1:
        raise ConfigError("SUPPORTBOT_DB: percent-encode @ in the user name or password "
                          "(@ as %40, : as %3A, & as %26)")
    return text


def _db_url(r: _Reader) -> Secret | None:
    text = _db_value(r)
    return Secret(text) if is_postgres_url(text) else None


def _db_path(r: _Reader) -> Path:
    name, text = "SUPPORTBOT_DB", _db_value(r) or "supportbot.db"
    if is_postgres_url(text):
        # The store is on the server; each instance indexes the docs into a file of its own.
        name, text = "SUPPORTBOT_KB_INDEX", r.raw("SUPPORTBOT_KB_INDEX") or "supportbot-kb.db"
    path = Path(text).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(
            f'{name}="{text}": the folder {folder} does not exist; create it or point '
            f"{name} at a file in an existing folder"
        )
    if path.is_dir():
        raise ConfigError(f'{name}="{text}" is a folder; give a file path such as '
                          f"{path / 'supportbot.db'}")
    return path


def _prompts_dir(r: _Reader) -> Path | None:
    text = r.raw("SUPPORTBOT_PROMPTS")
    if not text:
        return None
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise ConfigError(f'SUPPORTBOT_PROMPTS must be a folder of prompt files, got "{text}" '
                          "(no such folder)")
    if not (folder / "system.md").is_file():
        raise ConfigError(f'SUPPORTBOT_PROMPTS="{text}" has no system.md; copy the shipped '
                          "prompts (see the README) and edit them there")
    return folder


def _check_slack_mode(settings: Settings) -> None:
    if settings.slack_enabled and not (settings.slack_app_token or settings.slack_signing_secret):
        raise ConfigError(
            "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
            "SLACK_SIGNING_SECRET (HTTP mode) is: set one of them"
        )
