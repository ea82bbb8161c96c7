"""The container files, checked without a Docker engine: as text, and their two health-check
commands run here against a local /healthz.

docker-compose.yml must start replicated bots only once PostgreSQL and Redis answer, and pass
them variables the bot really reads; the Dockerfile's final image must run `supportbot run` as
an unprivileged user, with the PostgreSQL driver installed and a health check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

CHECKED_PREFIXES = ("SUPPORTBOT_", "SLACK_", "DISCORD_", "ANTHROPIC_")


# --- docker-compose.yml ---------------------------------------------------------------------

def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"no {name} service in docker-compose.yml"
    found = services[name]
    assert isinstance(found, dict)
    return found


def environment(name: str) -> dict[str, str | None]:
    """A service's environment, from either of compose's two forms (a mapping or a list)."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {pair[0]: pair[1] if len(pair) == 2 else None for pair in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolated(text: str) -> str:
    """`text` as compose makes it with none of its variables set: each ${NAME:-default} is
    its default, and ${NAME} is empty."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", text).replace("$$", "$")


def healthcheck_text(name: str) -> str:
    check = service(name).get("healthcheck")
    assert isinstance(check, dict), f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name}'s healthcheck is disabled"
    test = check.get("test")
    words = [test] if isinstance(test, str) else list(test or [])
    assert words and words[0] != "NONE", f"{name}'s healthcheck runs nothing"
    return " ".join(str(word) for word in words)


def names_read_by_config() -> set[str]:
    source = (ROOT / "bot" / "config.py").read_text()
    prefixes = "|".join(CHECKED_PREFIXES)
    return set(re.findall(rf"[\"']((?:{prefixes})[A-Z0-9_]+)[\"']", source))


def test_the_stack_has_postgres_redis_and_the_bot() -> None:
    assert str(service("postgres")["image"]).startswith("postgres:16")
    assert str(service("redis")["image"]).startswith("redis:7")
    assert service("bot").get("build"), "the bot is built from the Dockerfile"


BOTS = ["bot", "discord"]  # the Slack replicas, and the Discord process


@pytest.mark.parametrize("name", BOTS)
def test_the_bot_waits_for_healthy_postgres_and_redis(name: str) -> None:
    depends = service(name).get("depends_on")
    assert isinstance(depends, dict), "depends_on needs the long form to name a condition"
    for name in ("postgres", "redis"):
        assert name in depends, f"the bot does not depend on {name}"
        assert depends[name].get("condition") == "service_healthy", name


def test_every_service_has_a_healthcheck() -> None:
    for name in compose()["services"]:
        healthcheck_text(name)
    assert "pg_isready" in healthcheck_text("postgres")
    assert "redis-cli" in healthcheck_text("redis") and "ping" in healthcheck_text("redis")
    bot = healthcheck_text("bot")
    assert "/healthz" in bot and "SUPPORTBOT_METRICS_PORT" in bot and "9090" in bot


@pytest.mark.parametrize("name", BOTS)
def test_the_bot_is_pointed_at_the_stacks_postgres_and_redis(name: str) -> None:
    env = environment(name)
    db = urlsplit(interpolated(env.get("SUPPORTBOT_DB") or ""))
    postgres = {key: interpolated(value or "") for key, value in environment("postgres").items()}
    assert db.scheme == "postgresql", "SUPPORTBOT_DB must be a postgresql:// URL"
    assert db.hostname == "postgres" and db.port in (None, 5432)
    assert db.username == postgres["POSTGRES_USER"]
    assert db.password == postgres["POSTGRES_PASSWORD"], "the URL's password is not the server's"
    assert db.path == "/" + postgres["POSTGRES_DB"]

    redis = urlsplit(interpolated(env.get("SUPPORTBOT_REDIS_URL") or ""))
    assert redis.scheme == "redis" and redis.hostname == "redis"
    assert env.get("SUPPORTBOT_METRICS_PORT") == "9090", "the health check asks port 9090"


@pytest.mark.parametrize("name", BOTS)
def test_every_variable_passed_to_the_bot_is_one_it_reads(name: str) -> None:
    known = names_read_by_config()
    assert "SUPPORTBOT_DB" in known and "SLACK_BOT_TOKEN" in known  # the source was read
    env = environment(name)
    passed = {name for name in env if name.startswith(CHECKED_PREFIXES)}
    assert not passed - known, f"the bot reads no such variable: {sorted(passed - known)}"
    for name, value in env.items():  # a pass-through takes the variable of its own name
        used = _VARIABLE.fullmatch(value or "")
        assert used is None or used.group(1) == name, f"{name} is given ${{{used.group(1)}}}"


def test_slack_is_replicated_and_discord_runs_its_shards_in_one_process() -> None:
    slack, discord = environment("bot"), environment("discord")
    assert slack.get("SLACK_APP_TOKEN") and not slack.get("DISCORD_BOT_TOKEN")
    assert discord.get("DISCORD_BOT_TOKEN") and not discord.get("SLACK_BOT_TOKEN")
    assert "auto" in str(discord.get("SUPPORTBOT_DISCORD_SHARDS"))
    assert (service("discord").get("deploy") or {}).get("replicas") == 1


def test_the_bot_runs_replicated_without_host_ports() -> None:
    bot = service("bot")
    replicas = (bot.get("deploy") or {}).get("replicas")
    assert isinstance(replicas, int) and replicas > 1
    assert "ports" not in bot, "replicas would clash on a published host port"
    assert "container_name" not in bot, "replicas cannot share one container name"
    assert {"path": ".env", "required": False} in bot.get("env_file", []), \
        ".env is read when present and optional"


# --- Dockerfile -----------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    starts = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert len(starts) >= 2, "a builder stage and a final stage"
    return steps[starts[-1]:]


def last(keyword: str, steps: list[tuple[str, str]]) -> str | None:
    values = [arguments for name, arguments in steps if name == keyword]
    return values[-1] if values else None


def test_the_image_is_slim_python_311() -> None:
    base = final_stage()[0][1].split()
    assert [word for word in base if not word.startswith("--")][0] == "python:3.11-slim"


def test_the_image_runs_as_an_unprivileged_user() -> None:
    user = last("USER", final_stage())
    assert user is not None, "no USER in the final stage: it would run as root"
    assert user.split(":")[0] not in ("root", "0")


def test_the_image_runs_supportbot_run() -> None:
    steps = final_stage()
    entrypoint, cmd = last("ENTRYPOINT", steps), last("CMD", steps)
    assert entrypoint is not None
    command = json.loads(entrypoint) + (json.loads(cmd) if cmd else [])
    assert command == ["supportbot", "run"]


def test_the_image_checks_its_health() -> None:
    check = last("HEALTHCHECK", final_stage())
    assert check is not None and " CMD " in f" {check} "
    assert "/healthz" in check and "SUPPORTBOT_METRICS_PORT" in check
    assert "9090" in (last("EXPOSE", final_stage()) or "").split()
    env = " ".join(arguments for name, arguments in final_stage() if name == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
                    "SUPPORTBOT_METRICS_PORT=9090"):
        assert setting in env.split(), setting


def test_the_image_installs_the_wheel_with_the_postgres_extra() -> None:
    runs = [arguments for name, arguments in instructions() if name == "RUN"]
    assert not [run for run in runs if re.search(r"pip3? install\b.*\s(-e|--editable)\b", run)]
    final_runs = [arguments for name, arguments in final_stage() if name == "RUN"]
    assert any(re.search(r"pip3? install\b.*\bsupportbot\[[a-z,]*\bpostgres\b", run)
               for run in final_runs), "the final stage installs supportbot[postgres]"


# --- Both health checks, run for real -------------------------------------------------------

def compose_check_command() -> list[str]:
    test = service("bot")["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", test[1]]
    assert test[0] == "CMD", test
    return [str(word) for word in test[1:]]


def dockerfile_check_command() -> list[str]:
    check = last("HEALTHCHECK", final_stage())
    assert check is not None
    command = check.split(" CMD ", 1)[1].strip()
    return json.loads(command) if command.startswith("[") else ["sh", "-c", command]


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving_healthz() -> Iterator[int]:
    with ThreadingHTTPServer(("127.0.0.1", 0), Health) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def exit_code(command: list[str], port: int, bin_dir: Path) -> int:
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "SUPPORTBOT_METRICS_PORT": str(port)}
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_the_health_checks_pass_only_while_healthz_answers(tmp_path: Path) -> None:
    (tmp_path / "python").symlink_to(sys.executable)  # the image's `python`
    for command in (compose_check_command(), dockerfile_check_command()):
        shown = shlex.join(command)
        with serving_healthz() as port:
            assert exit_code(command, port, tmp_path) == 0, f"fails on a healthy bot: {shown}"
        assert exit_code(command, closed_port(), tmp_path) != 0, f"passes on none: {shown}"
