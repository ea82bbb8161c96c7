"""`supportbot chat` and `check` on Amazon Bedrock and Google Vertex AI, as subprocesses
against the local fake: the answer streams, `check` names the identity and never the secret,
and nothing reaches beyond this machine (the bot processes load tests/localonly)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.processes import bot_env, chat_once
from tests.e2e.test_bad_input import run
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.localonly.sitecustomize import MARK

SECRET = "fake-secret-key-for-tests-only"


def bedrock_env(fake: FakeAnthropic, workdir: Path, **extra: str) -> dict[str, str]:
    settings = dict(SUPPORTBOT_PROVIDER="bedrock", AWS_REGION="us-east-1",
                    SUPPORTBOT_PROVIDER_BASE_URL=fake.base_url + "/anthropic",
                    AWS_ACCESS_KEY_ID="AKIDFAKEEXAMPLE0001", AWS_SECRET_ACCESS_KEY=SECRET)
    return bot_env(workdir, **{**settings, **extra})


def vertex_env(fake: FakeAnthropic, workdir: Path, **extra: str) -> dict[str, str]:
    key_file = workdir / "service-account.json"
    key_file.write_text(json.dumps(fake.google.adc_file(fake.base_url + "/oauth2/token")))
    settings = dict(SUPPORTBOT_PROVIDER="vertex", CLOUD_ML_REGION="us-east5",
                    GOOGLE_CLOUD_PROJECT="acme-support",
                    SUPPORTBOT_PROVIDER_BASE_URL=fake.base_url + "/v1",
                    GOOGLE_APPLICATION_CREDENTIALS=str(key_file))
    return bot_env(workdir, **{**settings, **extra})


async def test_an_answer_streams_through_bedrock_signed_with_sigv4(tmp_path: Path) -> None:
    async with FakeAnthropic(delta_interval=0.01) as fake:
        fake.script(Reply(text="Open Settings and press Reset password."))
        out, err = await chat_once(tmp_path, bedrock_env(fake, tmp_path), "How do I reset it?")
        assert "bot> Open Settings and press Reset password." in out
        assert fake.aws.signed == 1 and fake.requests[-1].path == "/anthropic/v1/messages"
        code, out, err = await run(tmp_path, bedrock_env(fake, tmp_path), "check")
    assert code == 0, out + err
    assert "model: reached bedrock" in out and "AKID…0001" in out
    assert SECRET not in out + err and MARK not in err


async def test_an_answer_streams_through_vertex_with_a_refreshed_token(tmp_path: Path) -> None:
    async with FakeAnthropic(delta_interval=0.01) as fake:
        fake.script(Reply(text="Billing lives under Admin."))
        out, err = await chat_once(tmp_path, vertex_env(fake, tmp_path), "Where is billing?")
        assert "bot> Billing lives under Admin." in out
        assert fake.google.issued == 1
        assert fake.requests[-1].path.endswith("/models/claude-haiku-5-5:streamRawPredict")
        code, out, err = await run(tmp_path, vertex_env(fake, tmp_path), "check")
    assert code == 0, out + err
    assert "supportbot@acme-support.iam.gserviceaccount.com" in out
    assert "BEGIN PRIVATE KEY" not in out + err and MARK not in err


async def test_check_says_what_to_fix_on_a_cloud_that_refuses(tmp_path: Path) -> None:
    async with FakeAnthropic() as fake:
        code, out, err = await run(
            tmp_path, bedrock_env(fake, tmp_path, AWS_SECRET_ACCESS_KEY="wrong-secret"), "check")
        assert code != 0
        assert "signature we calculated does not match" in out
        assert "AWS_SECRET_ACCESS_KEY" in out and "wrong-secret" not in out + err
        code, out, err = await run(
            tmp_path, vertex_env(fake, tmp_path, CLOUD_ML_REGION="europe-west1"), "check")
        assert code != 0 and "not found" in out and "CLOUD_ML_REGION (europe-west1)" in out


async def test_a_missing_region_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    env = bot_env(tmp_path, SUPPORTBOT_PROVIDER="bedrock", AWS_BEARER_TOKEN_BEDROCK="k")
    env.pop("AWS_REGION", None)
    env.pop("AWS_DEFAULT_REGION", None)
    code, out, err = await run(tmp_path, env, "chat")
    assert code != 0 and "AWS_REGION" in err and "Traceback" not in err


async def test_the_guard_refuses_a_connection_beyond_this_machine(tmp_path: Path) -> None:
    # A provider pointed at a non-local address: the bot process must not get there.
    env = bot_env(tmp_path, SUPPORTBOT_PROVIDER="bedrock", AWS_REGION="us-east-1",
                  AWS_BEARER_TOKEN_BEDROCK="k",
                  SUPPORTBOT_PROVIDER_BASE_URL="http://192.0.2.1/anthropic")
    code, out, err = await run(tmp_path, env, "check")
    assert code != 0 and MARK in err


async def test_check_names_the_address_it_could_not_reach_and_forgotten_settings(
    tmp_path: Path
) -> None:
    env = bot_env(tmp_path, SUPPORTBOT_PROVIDER="bedrock", AWS_REGION="us-east-1",
                  AWS_BEARER_TOKEN_BEDROCK="k",
                  SUPPORTBOT_PROVIDER_BASE_URL="http://127.0.0.1:9/anthropic")
    code, out, err = await run(tmp_path, env, "check")
    assert code != 0 and "http://127.0.0.1:9/anthropic/v1/messages" in out
    assert "SUPPORTBOT_PROVIDER_BASE_URL" in out and "(HTTP 0)" not in out
    # Cloud settings with no SUPPORTBOT_PROVIDER: the Anthropic API is used, and check says so.
    env = bot_env(tmp_path, AWS_BEARER_TOKEN_BEDROCK="k", AWS_REGION="us-east-1")
    code, out, err = await run(tmp_path, env, "check")
    assert "WARNING — AWS_BEARER_TOKEN_BEDROCK is set but SUPPORTBOT_PROVIDER is anthropic" in out
