from pathlib import Path

import pytest

from bot.checks import describe
from bot.config import ConfigError, Secret, load_settings


def settings_from(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(env, dotenv_path=None)


def test_defaults_follow_the_contract() -> None:
    s = settings_from()
    assert s.model == "claude-haiku-5-5"
    assert s.fallback_model == "claude-sonnet-5-5"
    assert s.max_tokens == 1024
    assert s.temperature == 0.3
    assert s.effort == "low"
    assert s.history_tokens == 20_000
    assert s.db_path == Path("supportbot.db")
    assert s.anthropic_base_url == "https://api.anthropic.com"
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.port == 3000
    assert not s.slack_enabled and not s.discord_enabled
    assert s.user_rate == 20 and s.daily_budget_usd is None and s.retention_days is None
    assert not s.allowed_channels and not s.allowed_workspaces


def test_caps_and_places_are_read() -> None:
    s = settings_from(SUPPORTBOT_USER_RATE="0", SUPPORTBOT_DAILY_BUDGET_USD="$12.50",
                      SUPPORTBOT_ALLOWED_CHANNELS=" C1 ,C2,", SUPPORTBOT_RETENTION_DAYS="90")
    assert (s.user_rate, s.daily_budget_usd, s.retention_days) == (0, 12.5, 90.0)
    assert s.allowed_channels == {"C1", "C2"}
    assert settings_from(SUPPORTBOT_ALLOWED_CHANNELS="c0123abcd").allowed_channels == {
        "C0123ABCD"}  # Slack ids are upper-case: a lower-case copy still matches


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SUPPORTBOT_MAX_TOKENS", "abc", 'MAX_TOKENS must be a positive integer, got "abc"'),
        ("SUPPORTBOT_MAX_TOKENS", "-5", "SUPPORTBOT_MAX_TOKENS must be a positive integer"),
        ("SUPPORTBOT_TEMPERATURE", "2", "SUPPORTBOT_TEMPERATURE must be a number from 0 to 1"),
        ("SUPPORTBOT_EFFORT", "max", "SUPPORTBOT_EFFORT must be one of low / medium / high / off"),
        ("ANTHROPIC_BASE_URL", "api.anthropic.com", "ANTHROPIC_BASE_URL must be an http"),
        ("PORT", "70000", "PORT must be a port number"),
        ("DISCORD_MESSAGE_CONTENT", "maybe", "DISCORD_MESSAGE_CONTENT must be true or false"),
        ("SUPPORTBOT_KB", "/no/such/folder", "SUPPORTBOT_KB must be a folder of docs"),
        ("SUPPORTBOT_KB", "ftp://docs.acme.test", "neither a folder nor an http(s) URL"),
        ("SUPPORTBOT_KB_REFRESH_MINUTES", "abc", "SUPPORTBOT_KB_REFRESH_MINUTES must be 0"),
        ("SUPPORTBOT_KB_REFRESH_MINUTES", "0.001", "minutes from 1 to 10080"),
        ("SUPPORTBOT_KB_REFRESH_MINUTES", "nan", "SUPPORTBOT_KB_REFRESH_MINUTES must be 0"),
        ("SUPPORTBOT_USER_RATE", "-1", "SUPPORTBOT_USER_RATE must be a whole number"),
        ("SUPPORTBOT_USER_RATE", "ten", "SUPPORTBOT_USER_RATE must be a whole number"),
        ("SUPPORTBOT_DAILY_BUDGET_USD", "0", "SUPPORTBOT_DAILY_BUDGET_USD must be a positive"),
        ("SUPPORTBOT_DAILY_BUDGET_USD", "nan", "SUPPORTBOT_DAILY_BUDGET_USD must be a positive"),
        ("SUPPORTBOT_ALLOWED_CHANNELS", "C1, #general", 'got "#GENERAL"'),
        ("SUPPORTBOT_ALLOWED_CHANNELS", "general", 'got "GENERAL": Slack ids look like'),
        ("SUPPORTBOT_ALLOWED_WORKSPACES", "T1;T2", "SUPPORTBOT_ALLOWED_WORKSPACES takes ids"),
        ("SUPPORTBOT_ESCALATION_SLACK_CHANNEL", "#handovers", "takes one channel id"),
        ("SUPPORTBOT_ESCALATION_SLACK_CHANNEL", "S0TEAM", "takes one channel id"),
        ("SUPPORTBOT_ALLOWED_CHANNELS", "support2", 'got "SUPPORT2"'),
        ("SUPPORTBOT_ESCALATION_MENTION", "@team", "must be a Slack user group id"),
        ("SUPPORTBOT_ESCALATION_CONTACT", "Ask <@U0LEAD>", "one short plain sentence"),
        ("SUPPORTBOT_DAILY_BUDGET_USD", "5,50", "with a dot for cents"),
        ("SUPPORTBOT_USER_RATE", "99999999999", "from 0 (no cap) to 100000"),
        ("SUPPORTBOT_RETENTION_DAYS", "forever", "SUPPORTBOT_RETENTION_DAYS must be a positive"),
        ("SUPPORTBOT_REDIS_URL", "localhost:6379", "SUPPORTBOT_REDIS_URL must be a redis://"),
        ("SUPPORTBOT_REDIS_URL", "redis://:p@ss@h:6379/0", "percent-encode @"),
        ("SUPPORTBOT_REDIS_URL", "redis://h:port/0", "the port must be a number"),
        ("SUPPORTBOT_REDIS_PREFIX", "my prefix", "SUPPORTBOT_REDIS_PREFIX must be letters"),
        ("SUPPORTBOT_DISCORD_SHARDS", "4-3/8", "SUPPORTBOT_DISCORD_SHARDS must be auto, or"),
        ("SUPPORTBOT_DISCORD_SHARDS", "0-8/8", "such as 0-3/8"),
        ("SUPPORTBOT_DISCORD_SHARDS", "3", "such as 0-3/8"),
        ("SUPPORTBOT_METRICS_PORT", "0", "SUPPORTBOT_METRICS_PORT must be a port number"),
        ("SUPPORTBOT_LEASE_SECONDS", "1", "SUPPORTBOT_LEASE_SECONDS must be a number of seconds"),
        ("SUPPORTBOT_SLACK_UPDATES_PER_MINUTE", "0", "from 1 to 10000"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(**{name: value})
    assert expected in str(info.value)


def test_max_tokens_is_capped_by_the_model() -> None:
    with pytest.raises(ConfigError, match="at most 4096 for claude-3-haiku-20240307"):
        settings_from(SUPPORTBOT_MODEL="claude-3-haiku-20240307", SUPPORTBOT_MAX_TOKENS="5000")


def test_token_errors_never_echo_the_token() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(SLACK_BOT_TOKEN="xoxp-user-token-secret-123")
    assert "SLACK_BOT_TOKEN must start with 'xoxb-'" in str(info.value)
    assert "secret-123" not in str(info.value)


def test_slack_needs_a_connection_mode() -> None:
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN .* SLACK_SIGNING_SECRET"):
        settings_from(SLACK_BOT_TOKEN="xoxb-1-2-abc")


def test_empty_fallback_turns_fallback_off() -> None:
    assert settings_from(SUPPORTBOT_FALLBACK_MODEL="").fallback_model is None


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SUPPORTBOT_MAX_TOKENS=2048\nSUPPORTBOT_EFFORT=high\n")
    s = load_settings({"SUPPORTBOT_EFFORT": "medium"}, dotenv_path=dotenv)
    assert s.max_tokens == 2048
    assert s.effort == "medium"


def test_secrets_are_masked_everywhere() -> None:
    key = "sk-ant-api03-verysecretvalue-xyz"
    s = settings_from(ANTHROPIC_API_KEY=key, DISCORD_BOT_TOKEN="discord-secret-token-value")
    text = "\n".join(describe(s)) + repr(s) + str(s.anthropic_api_key)
    assert key not in text
    assert "discord-secret-token-value" not in text
    assert "sk-a…yz" in text
    assert s.secrets() == [key, "discord-secret-token-value"]
    assert not Secret("")


def test_several_instances_settings_are_read() -> None:
    s = settings_from(SUPPORTBOT_REDIS_URL="rediss://:s3cret@cache.internal:6380/2",
                      SUPPORTBOT_REDIS_PREFIX="prod", SUPPORTBOT_DISCORD_SHARDS="4-7/16",
                      SUPPORTBOT_METRICS_PORT="9090", SUPPORTBOT_LEASE_SECONDS="30",
                      SUPPORTBOT_SLACK_UPDATES_PER_MINUTE="90")
    assert s.redis_shown == "rediss://:***@cache.internal:6380/2"
    assert s.redis_prefix == "prod:"
    assert s.discord_shards is not None and s.discord_shards.ids == [4, 5, 6, 7]
    assert s.discord_shards.count == 16 and str(s.discord_shards) == "4-7/16"
    assert (s.metrics_port, s.lease_seconds, s.slack_updates_per_minute) == (9090, 30.0, 90)
    assert "s3cret" in s.secrets()  # the log redactor hides it
    assert "s3cret" not in "\n".join(describe(s))
    auto = settings_from(SUPPORTBOT_DISCORD_SHARDS="AUTO").discord_shards
    assert auto is not None and auto.auto
    assert settings_from(SUPPORTBOT_DISCORD_SHARDS="5/8").discord_shards.ids == [5]
    plain = settings_from()
    assert not plain.redis_url and plain.discord_shards is None and plain.metrics_port is None
