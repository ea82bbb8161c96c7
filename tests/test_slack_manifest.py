"""The Slack app manifest asks for exactly the scopes and events the bot needs."""

from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "slack-app-manifest.yml"
SCOPES = {"app_mentions:read", "chat:write", "im:history", "im:read", "im:write",
          "channels:history", "groups:history", "files:read", "reactions:write",
          "reactions:read", "usergroups:read", "users:read"}
EVENTS = {"app_mention", "message.im", "message.channels", "message.groups", "reaction_added"}


def items_under(key: str) -> list[str]:
    """The `- item` lines of the YAML list that follows `key:` (one level of nesting)."""
    lines = MANIFEST.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{key}:")
    found = []
    for line in lines[start + 1:]:
        stripped = line.strip()
        if not stripped.startswith("- "):
            break
        found.append(stripped[2:].split("#")[0].strip())
    return found


def setting(name: str) -> str:
    lines = [line.strip() for line in MANIFEST.read_text().splitlines()]
    [value] = [line.split(":", 1)[1].split("#")[0].strip() for line in lines
               if line.startswith(f"{name}:")]
    return value


def test_exactly_the_scopes_and_events_needed() -> None:
    assert sorted(items_under("bot")) == sorted(SCOPES)
    assert sorted(items_under("bot_events")) == sorted(EVENTS)


def test_socket_mode_on_and_dms_allowed() -> None:
    assert setting("socket_mode_enabled") == "true"
    assert setting("messages_tab_enabled") == "true"
    assert setting("messages_tab_read_only_enabled") == "false"


def test_interactivity_on_for_the_buttons_and_forms() -> None:
    assert setting("is_enabled") == "true"
