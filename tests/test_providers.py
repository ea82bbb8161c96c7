"""Claude through Amazon Bedrock and Google Vertex AI, against the local fake: signed and keyed
requests, token refresh, the request shapes each cloud wants, and clear refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.checks import describe
from bot.config import ConfigError, ProviderSettings, Secret, load_settings
from bot.conversation import Prompt, StreamEnd, Turn
from bot.errors import AuthenticationError, BadRequestError, LLMError
from bot.llm import ClaudeClient, ModelOptions
from bot.models import cost_usd, profile
from bot.providers import Bedrock, Vertex
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply
from tests.test_llm import collect as collect_stream

OPTIONS = ModelOptions("claude-haiku-5-5", None, 0.3, "low")


def prompt(question: str = "How do I reset my password?") -> Prompt:
    return Prompt(system="You are a support bot.", context="",
                  turns=(Turn("user", question, 10),), max_tokens=256)


async def collect(client: ClaudeClient) -> tuple[str, StreamEnd]:
    return await collect_stream(client, prompt())


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AWS credentials from the environment only: no files, no metadata address."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEEXAMPLE0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key-for-tests-only")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(default_words=12) as server:
        yield server


def bedrock(fake: FakeAnthropic, **kw: str) -> ClaudeClient:
    settings = ProviderSettings("bedrock", fake.base_url + "/anthropic",
                                region=kw.get("region", "us-east-1"),
                                aws_profile=kw.get("profile", ""),
                                bedrock_api_key=Secret(kw.get("key", "")))
    options = ModelOptions(kw.get("model", "claude-haiku-5-5"), kw.get("fallback"), 0.3, "low")
    return ClaudeClient(Bedrock(settings), options, backoff_base=0.01)


def adc_file(fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(fake.google.adc_file(fake.base_url + "/oauth2/token")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def vertex(fake: FakeAnthropic, region: str = "us-east5", fallback: str | None = None
           ) -> ClaudeClient:
    settings = ProviderSettings("vertex", fake.base_url + "/v1", region=region,
                                project="acme-support")
    return ClaudeClient(Vertex(settings), ModelOptions("claude-haiku-5-5", fallback, 0.3, "low"),
                        backoff_base=0.01)


async def test_bedrock_with_an_api_key_streams_the_answer(fake: FakeAnthropic) -> None:
    fake.script(Reply(text="Use the Forgot password link."))
    client = bedrock(fake, key="fake-bedrock-api-key")
    try:
        text, end = await collect(client)
    finally:
        await client.aclose()
    assert text == "Use the Forgot password link."
    request = fake.requests[-1]
    assert request.path == "/anthropic/v1/messages" and fake.aws.bearer == 1
    assert request.body["model"] == "anthropic.claude-haiku-5-5"
    assert request.headers["authorization"] == "Bearer fake-bedrock-api-key"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "anthropic_version" not in request.body  # mantle reads the header
    assert end.model == "anthropic.claude-haiku-5-5"
    assert end.price_factor == 1.1  # a regional endpoint costs 10 % more than global


async def test_bedrock_signs_with_sigv4_from_the_credential_chain(
    fake: FakeAnthropic, aws_env: None
) -> None:
    client = bedrock(fake, model="global.anthropic.claude-haiku-5-5")
    try:
        text, end = await collect(client)
        identity = await client.check()
    finally:
        await client.aclose()
    assert text and fake.aws.signed == 2  # the fake recomputed both signatures
    assert fake.requests[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert end.price_factor == 1.0  # the global profile: list price
    assert "AKID…0001" in identity and "env" in identity
    assert "fake-secret" not in identity


async def test_bedrock_reads_a_named_profile(fake: FakeAnthropic, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text("[support]\naws_access_key_id = AKIDFAKEEXAMPLE0001\n"
                           "aws_secret_access_key = fake-secret-key-for-tests-only\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = bedrock(fake, profile="support")
    try:
        text, _ = await collect(client)
        identity = await client.check()
    finally:
        await client.aclose()
    assert text and fake.aws.signed == 2
    assert "profile support" in identity and "shared-credentials-file" in identity


async def test_a_wrong_secret_or_region_is_refused_with_what_to_check(
    fake: FakeAnthropic, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = bedrock(fake, region="eu-west-3")
    try:
        with pytest.raises(AuthenticationError, match="scoped to a valid region") as region:
            await collect(client)
    finally:
        await client.aclose()
    assert region.value.status == 403
    assert "AWS_REGION (eu-west-3)" in client.provider.hint()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    client = bedrock(fake)
    try:
        with pytest.raises(AuthenticationError, match="signature we calculated does not match"):
            await collect(client)
    finally:
        await client.aclose()
    assert fake.aws.signed == 0
    # Each refusal was tried once more with the credential chain read again, never more.
    assert len(fake.requests) == 4


async def test_bedrock_refuses_an_unknown_api_key(fake: FakeAnthropic) -> None:
    client = bedrock(fake, key="stale-key")
    try:
        with pytest.raises(AuthenticationError, match="security token included"):
            await collect(client)
    finally:
        await client.aclose()
    assert "AWS_BEARER_TOKEN_BEDROCK" in client.provider.hint()


async def test_vertex_streams_with_the_model_in_the_url(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_file(fake, tmp_path, monkeypatch)
    fake.script(Reply(text="Open Settings, then Security."))
    client = vertex(fake)
    try:
        text, end = await collect(client)
    finally:
        await client.aclose()
    assert text == "Open Settings, then Security."
    request = fake.requests[-1]
    assert request.path == ("/v1/projects/acme-support/locations/us-east5/publishers/"
                            "anthropic/models/claude-haiku-5-5:streamRawPredict")
    assert "model" not in request.body
    assert request.body["anthropic_version"] == "vertex-2023-10-16"
    assert request.body["stream"] is True
    assert fake.google.issued == 1 and end.price_factor == 1.1


async def test_a_revoked_vertex_token_is_refreshed_and_the_answer_goes_on(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_file(fake, tmp_path, monkeypatch)
    client = vertex(fake)
    try:
        await collect(client)
        await collect(client)  # the token is reused while it is valid
        assert fake.google.issued == 1
        fake.google.revoke_all()  # expired early, or revoked by an admin
        text, _ = await collect(client)
    finally:
        await client.aclose()
    assert text and fake.google.issued == 2
    assert fake.requests[-2].headers["authorization"] != fake.requests[-1].headers[
        "authorization"]


async def test_a_token_near_its_expiry_is_refreshed_before_the_request(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.google.token_lifetime = 60  # inside google-auth's refresh margin: stale at once
    adc_file(fake, tmp_path, monkeypatch)
    client = vertex(fake)
    try:
        await collect(client)
        await collect(client)
    finally:
        await client.aclose()
    assert fake.google.issued == 2
    assert all(r.path.endswith(":streamRawPredict") for r in fake.requests)  # never a 401


async def test_vertex_in_the_wrong_region_says_the_model_is_not_there(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_file(fake, tmp_path, monkeypatch)
    client = vertex(fake, region="europe-west1")
    try:
        with pytest.raises(BadRequestError, match="not found") as error:
            await collect(client)
    finally:
        await client.aclose()
    assert error.value.status == 404 and error.value.error_type == "NOT_FOUND"
    assert "CLOUD_ML_REGION (europe-west1)" in client.provider.hint()


async def test_vertex_global_is_list_price_and_its_host_has_no_region() -> None:
    provider = Vertex(ProviderSettings("vertex", region="global", project="p"))
    assert provider.base_url == "https://aiplatform.googleapis.com/v1"
    assert provider.price_factor("claude-haiku-5-5") == 1.0
    regional = Vertex(ProviderSettings("vertex", region="us-east5", project="p"))
    assert regional.base_url == "https://us-east5-aiplatform.googleapis.com/v1"
    mantle = Bedrock(ProviderSettings("bedrock", region="eu-west-1"))
    assert mantle.base_url == "https://bedrock-mantle.eu-west-1.api.aws/anthropic"
    assert mantle.service == "bedrock-mantle"
    runtime = Bedrock(ProviderSettings(
        "bedrock", "https://bedrock-runtime.eu-west-1.amazonaws.com/anthropic", "eu-west-1"))
    assert runtime.service == "bedrock"
    prepared = await runtime.__class__(ProviderSettings(
        "bedrock", runtime.base_url, "eu-west-1", bedrock_api_key=Secret("k"))).prepare(
        "claude-haiku-5-5", {"max_tokens": 5}, stream=True)
    assert json.loads(prepared.content)["anthropic_version"] == "bedrock-2023-05-31"


@pytest.mark.parametrize("provider", ["bedrock", "vertex"])
async def test_the_fallback_model_answers_on_every_provider(
    provider: str, fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_file(fake, tmp_path, monkeypatch)
    fake.script(*[Fail(529, "overloaded_error")] * 4, Reply(text="From the fallback."))
    client = (bedrock(fake, key="fake-bedrock-api-key", fallback="claude-sonnet-5-5")
              if provider == "bedrock" else vertex(fake, fallback="claude-sonnet-5-5"))
    try:
        text, end = await collect(client)
    finally:
        await client.aclose()
    assert text == "From the fallback." and "claude-sonnet-5-5" in end.model
    assert "sonnet" in fake.requests[-1].path + json.dumps(fake.requests[-1].body)


def test_a_missing_setting_fails_at_start_naming_it() -> None:
    cases = {
        "AWS_REGION": {"SUPPORTBOT_PROVIDER": "bedrock", "AWS_BEARER_TOKEN_BEDROCK": "k"},
        "CLOUD_ML_REGION": {"SUPPORTBOT_PROVIDER": "vertex", "GOOGLE_CLOUD_PROJECT": "p"},
        "GOOGLE_CLOUD_PROJECT": {"SUPPORTBOT_PROVIDER": "vertex", "CLOUD_ML_REGION": "global"},
        "SUPPORTBOT_PROVIDER": {"SUPPORTBOT_PROVIDER": "azure"},
        "SUPPORTBOT_PROVIDER_BASE_URL": {"SUPPORTBOT_PROVIDER": "bedrock",
                                         "SUPPORTBOT_PROVIDER_BASE_URL": "bedrock.local"},
    }
    for name, env in cases.items():
        with pytest.raises(ConfigError, match=name):
            load_settings(env, dotenv_path=None)
    settings = load_settings({"SUPPORTBOT_PROVIDER": "vertex", "GOOGLE_CLOUD_LOCATION": "global",
                              "ANTHROPIC_VERTEX_PROJECT_ID": "p"}, dotenv_path=None)
    assert settings.model_ready and settings.provider.region == "global"
    keyed = load_settings({"SUPPORTBOT_PROVIDER": "bedrock", "AWS_DEFAULT_REGION": "us-west-2",
                           "AWS_BEARER_TOKEN_BEDROCK": "secret-bedrock-key"}, dotenv_path=None)
    assert "secret-bedrock-key" in keyed.secrets()  # so the log redactor hides it
    shown = "\n".join(describe(keyed))  # what `supportbot check` prints
    assert "secret-bedrock-key" not in shown and "provider.region" in shown


def test_cloud_model_ids_find_their_prices() -> None:
    usage_model = profile("us.anthropic.claude-haiku-4-5-20251001-v1:0")
    assert usage_model.id == "claude-haiku-4-5" and usage_model.price is not None
    assert profile("claude-haiku-4-5@20251001").id == "claude-haiku-4-5"
    from bot.conversation import Usage
    usage = Usage(input_tokens=50_000, output_tokens=0)
    assert cost_usd(usage, profile("claude-haiku-5-5"), 1.1) == pytest.approx(0.0055)


async def test_no_credentials_anywhere_is_an_honest_error(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    client = bedrock(fake)
    try:
        with pytest.raises(LLMError, match="no AWS credentials found"):
            await collect(client)
    finally:
        await client.aclose()
    assert fake.requests == []


def test_the_cloud_sdks_stay_out_of_the_default_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml")
                            .read_text())["project"]
    default = " ".join(project["dependencies"]).lower()
    assert "botocore" not in default and "boto3" not in default and "google-auth" not in default
    extras = project["optional-dependencies"]
    assert any("botocore" in d for d in extras["bedrock"])
    assert any("google-auth" in d for d in extras["vertex"])
    # Without the extra, the start says which one to install (a Bedrock API key needs none).
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"supportbot\[bedrock\]"):
        load_settings({"SUPPORTBOT_PROVIDER": "bedrock", "AWS_REGION": "us-east-1"},
                      dotenv_path=None)
    with pytest.raises(ConfigError, match=r"supportbot\[vertex\]"):
        load_settings({"SUPPORTBOT_PROVIDER": "vertex", "CLOUD_ML_REGION": "global",
                       "GOOGLE_CLOUD_PROJECT": "p"}, dotenv_path=None)
    assert load_settings({"SUPPORTBOT_PROVIDER": "bedrock", "AWS_REGION": "us-east-1",
                          "AWS_BEARER_TOKEN_BEDROCK": "k"}, dotenv_path=None).model_ready


async def test_a_fake_run_as_a_process_hands_out_its_vertex_key_file(
    fake: FakeAnthropic
) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        key_file = (await http.get(fake.base_url + "/_fake/google-credentials")).json()
    assert key_file["type"] == "service_account"
    assert key_file["token_uri"] == fake.base_url + "/oauth2/token"


async def test_a_broken_aws_setup_is_named_not_a_traceback(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text("[support]\naws_access_key_id = AKIDFAKEEXAMPLE0001\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for profile_name, why in (("suport", "could not be found"), ("support", "Partial")):
        client = bedrock(fake, profile=profile_name)
        try:
            with pytest.raises(AuthenticationError, match=why) as error:
                await collect(client)
        finally:
            await client.aclose()
        assert "AWS credentials could not be read" in str(error.value)
    assert fake.requests == []
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY must be set together"):
        load_settings({"SUPPORTBOT_PROVIDER": "bedrock", "AWS_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "AKIDFAKEEXAMPLE0001"}, dotenv_path=None)


async def test_keys_and_a_key_file_named_in_dotenv_are_used(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(fake.google.adc_file(fake.base_url + "/oauth2/token")))
    dotenv = tmp_path / ".env"
    dotenv.write_text("AWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID=AKIDFAKEEXAMPLE0001\n"
                      "AWS_SECRET_ACCESS_KEY=fake-secret-key-for-tests-only\n"
                      "GOOGLE_CLOUD_PROJECT=acme-support\nCLOUD_ML_REGION=us-east5\n"
                      f"GOOGLE_APPLICATION_CREDENTIALS={key_file}\n")
    aws = load_settings({"SUPPORTBOT_PROVIDER": "bedrock"}, dotenv_path=dotenv).provider
    google = load_settings({"SUPPORTBOT_PROVIDER": "vertex"}, dotenv_path=dotenv).provider
    assert "fake-secret-key-for-tests-only" in load_settings(
        {"SUPPORTBOT_PROVIDER": "bedrock"}, dotenv_path=dotenv).secrets()
    signed = ClaudeClient(Bedrock(ProviderSettings(
        "bedrock", fake.base_url + "/anthropic", aws.region, aws_keys=aws.aws_keys)), OPTIONS)
    keyed = ClaudeClient(Vertex(ProviderSettings(
        "vertex", fake.base_url + "/v1", google.region, google.project,
        google_key_file=google.google_key_file)), OPTIONS)
    try:
        assert (await collect(signed))[0] and (await collect(keyed))[0]
    finally:
        await signed.aclose()
        await keyed.aclose()
    assert fake.aws.signed == 1 and fake.google.issued == 1
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    client = ClaudeClient(Vertex(ProviderSettings(
        "vertex", fake.base_url + "/v1", "us-east5", "acme-support",
        google_key_file=str(broken))), OPTIONS)
    try:
        with pytest.raises(AuthenticationError, match="broken.json"):
            await collect(client)
    finally:
        await client.aclose()


def test_the_region_comes_from_the_aws_profile_and_must_look_like_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile support]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    settings = load_settings({"SUPPORTBOT_PROVIDER": "bedrock", "AWS_PROFILE": "support",
                              "AWS_BEARER_TOKEN_BEDROCK": "k"}, dotenv_path=None)
    assert settings.provider.region == "eu-central-1"
    for name, env in (("AWS_REGION", {"SUPPORTBOT_PROVIDER": "bedrock", "AWS_REGION":
                                      "https://bedrock.us-east-1.amazonaws.com",
                                      "AWS_BEARER_TOKEN_BEDROCK": "k"}),
                      ("CLOUD_ML_REGION", {"SUPPORTBOT_PROVIDER": "vertex",
                                           "CLOUD_ML_REGION": "us east5",
                                           "GOOGLE_CLOUD_PROJECT": "p"})):
        with pytest.raises(ConfigError, match=f"{name} must be a"):
            load_settings(env, dotenv_path=None)
