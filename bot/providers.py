"""Where the Messages API is served: the Anthropic API, Amazon Bedrock or Google Vertex AI.

All three take the same request body and stream the same SSE events; they differ in the URL,
where the model id goes, a version field, how a request proves who sends it, and the shape of
some error bodies. A Provider holds exactly those differences, so llm.py has one client.

Bedrock is reached on its Messages API endpoint (`/anthropic/v1/messages` on bedrock-mantle,
or on bedrock-runtime's `/anthropic` path) with a Bedrock API key or SigV4 signed by botocore
from the AWS credential chain; Vertex on `:streamRawPredict` with an OAuth token from
Application Default Credentials (google-auth). Both SDKs are optional extras and only
imported here, when that provider is configured.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from bot.config import ProviderSettings
from bot.errors import AuthenticationError, UnavailableError
from bot.models import bedrock_model_id, regional_premium

API_VERSION = "2023-06-01"
BEDROCK_BODY_VERSION = "bedrock-2023-05-31"  # bedrock-runtime's /anthropic path reads the body
VERTEX_BODY_VERSION = "vertex-2023-10-16"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
LOCAL_CREDENTIALS = "credentials"  # error_type of a refusal found here, before any request


@dataclass(frozen=True)
class Prepared:
    """One request ready to send: path under the base URL, headers, exact body bytes."""

    path: str
    headers: dict[str, str]
    content: bytes


class Provider(Protocol):
    name: str
    base_url: str

    def model_id(self, model: str) -> str:
        """The id this provider knows the model by."""
        ...

    def price_factor(self, model: str) -> float:
        """What this endpoint charges over the list price (regional endpoints: 1.1)."""
        ...

    async def prepare(self, model: str, body: dict[str, Any], stream: bool) -> Prepared: ...

    async def renew(self) -> bool:
        """After a 401: get fresh credentials; True when a retry may now succeed."""
        ...

    async def identity(self) -> str:
        """Who the requests are sent as, for `supportbot check` (never a secret)."""
        ...

    def hint(self) -> str:
        """The settings to look at when the provider refuses the credentials."""
        ...


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class AnthropicAPI:
    """api.anthropic.com: the key in x-api-key, the model in the body."""

    name = "anthropic"

    def __init__(self, api_key: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key

    def model_id(self, model: str) -> str:
        return model

    def price_factor(self, model: str) -> float:
        return 1.0  # the Claude API is global: list prices

    def headers(self) -> dict[str, str]:
        """What every request to the API carries: the key and the version."""
        return {"x-api-key": self._key, "anthropic-version": API_VERSION,
                "content-type": "application/json"}

    async def prepare(self, model: str, body: dict[str, Any], stream: bool) -> Prepared:
        return Prepared("/v1/messages", self.headers(), _json({**body, "model": model}))

    async def renew(self) -> bool:
        return False

    async def identity(self) -> str:
        return "an Anthropic API key (ANTHROPIC_API_KEY)"

    def hint(self) -> str:
        return "check ANTHROPIC_API_KEY"


class Bedrock:
    """Amazon Bedrock's Messages API endpoint (bedrock-mantle by default)."""

    name = "bedrock"

    def __init__(self, settings: ProviderSettings) -> None:
        self.region = settings.region  # config.py made sure there is one
        self.base_url = (settings.base_url or
                         f"https://bedrock-mantle.{self.region}.api.aws/anthropic").rstrip("/")
        host = urlsplit(self.base_url).hostname or ""
        # bedrock-runtime's /anthropic path signs as "bedrock" and reads a body version.
        self.runtime = host.startswith("bedrock-runtime.")
        self.service = "bedrock" if self.runtime else "bedrock-mantle"
        self._key = settings.bedrock_api_key.value
        self._profile = settings.aws_profile
        self._keys = settings.aws_keys  # given keys (the environment or .env) come first
        self._credentials: Any = None

    def model_id(self, model: str) -> str:
        return bedrock_model_id(model)

    def price_factor(self, model: str) -> float:
        return regional_premium(model, global_endpoint=self.model_id(model).startswith("global."))

    async def prepare(self, model: str, body: dict[str, Any], stream: bool) -> Prepared:
        payload = {**body, "model": self.model_id(model)}
        if self.runtime:
            payload["anthropic_version"] = BEDROCK_BODY_VERSION
        content = _json(payload)
        headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if self._key:
            headers["authorization"] = f"Bearer {self._key}"
            return Prepared("/v1/messages", headers, content)
        signed = await asyncio.to_thread(self._sign, self.base_url + "/v1/messages", headers,
                                         content)
        return Prepared("/v1/messages", signed, content)

    def _sign(self, url: str, headers: dict[str, str], content: bytes) -> dict[str, str]:
        """SigV4 by botocore, from the AWS credential chain (env, profile, SSO, container or
        instance role); refreshable credentials renew themselves here."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = self._frozen_credentials()
        request = AWSRequest(method="POST", url=url, data=content, headers=dict(headers))
        SigV4Auth(frozen, self.service, self.region).add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}

    def _frozen_credentials(self) -> Any:
        from botocore.exceptions import BotoCoreError

        try:
            return self._read_credentials()
        except BotoCoreError as error:  # a missing profile, half a key pair, a broken file
            raise AuthenticationError(
                f"the AWS credentials could not be read: {error}",
                status=401, error_type=LOCAL_CREDENTIALS) from None

    def _read_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session
            from botocore.credentials import Credentials

            if self._keys:
                key_id, secret, token = self._keys
                self._credentials = Credentials(key_id, secret.value, token.value or None,
                                                method="env")
                return self._credentials.get_frozen_credentials()
            session = botocore.session.Session(profile=self._profile or None)
            self._credentials = session.get_credentials()
            if self._credentials is None:
                raise AuthenticationError(
                    "no AWS credentials found for SUPPORTBOT_PROVIDER=bedrock: set "
                    "AWS_BEARER_TOKEN_BEDROCK, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or run where a role provides them",
                    status=401, error_type=LOCAL_CREDENTIALS)
        return self._credentials.get_frozen_credentials()

    async def renew(self) -> bool:
        if self._key:
            return False
        self._credentials = None  # read the chain again (a rotated key, a new role session)
        return True

    async def identity(self) -> str:
        if self._key:
            return f"a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK) in {self.region}"
        frozen = await asyncio.to_thread(self._frozen_credentials)
        method = getattr(self._credentials, "method", "") or "the AWS credential chain"
        key_id = str(frozen.access_key)
        shown = f"{key_id[:4]}…{key_id[-4:]}" if len(key_id) > 8 else "****"
        profile = f", profile {self._profile}" if self._profile else ""
        return f"AWS access key {shown} from {method}{profile}, SigV4 in {self.region}"

    def hint(self) -> str:
        if self._key:
            return f"check AWS_BEARER_TOKEN_BEDROCK and AWS_REGION ({self.region})"
        return ("check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY) and AWS_REGION ({self.region})")


class Vertex:
    """Google Vertex AI: the model in the URL, an OAuth token from ADC."""

    name = "vertex"

    def __init__(self, settings: ProviderSettings) -> None:
        self.region, self.project = settings.region, settings.project  # checked in config.py
        host = ("https://aiplatform.googleapis.com" if self.region == "global"
                else f"https://{self.region}-aiplatform.googleapis.com")
        self.base_url = (settings.base_url or f"{host}/v1").rstrip("/")
        self._key_file = settings.google_key_file
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    def model_id(self, model: str) -> str:
        return model

    def price_factor(self, model: str) -> float:
        return regional_premium(model, global_endpoint=self.region == "global")

    async def prepare(self, model: str, body: dict[str, Any], stream: bool) -> Prepared:
        payload = {key: value for key, value in body.items() if key != "model"}
        payload["anthropic_version"] = VERTEX_BODY_VERSION
        verb = "streamRawPredict" if stream else "rawPredict"
        path = (f"/projects/{quote(self.project)}/locations/{quote(self.region)}/publishers/"
                f"anthropic/models/{quote(model, safe='@')}:{verb}")
        token = await self._token()
        return Prepared(path, {"authorization": f"Bearer {token}",
                               "content-type": "application/json"}, _json(payload))

    async def _token(self) -> str:
        """A valid access token; refreshed (in a thread: google-auth is synchronous) when
        missing or within google-auth's refresh margin of its expiry."""
        async with self._lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._load)
            if not self._credentials.valid:
                await asyncio.to_thread(self._refresh)
            return str(self._credentials.token)

    def _load(self) -> Any:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            if self._key_file:  # named in .env, where google-auth does not look
                return _key_file_credentials(self._key_file)
            credentials, _ = google.auth.default(scopes=[GOOGLE_SCOPE])
        except (DefaultCredentialsError, OSError, ValueError) as error:
            where = (f"GOOGLE_APPLICATION_CREDENTIALS ({self._key_file}): {error}"
                     if self._key_file else "run `gcloud auth application-default login`, or "
                     "set GOOGLE_APPLICATION_CREDENTIALS to a key file")
            raise AuthenticationError(
                f"no usable Google credentials for SUPPORTBOT_PROVIDER=vertex: {where}",
                status=401, error_type=LOCAL_CREDENTIALS) from None
        return credentials

    def _refresh(self) -> None:
        from google.auth.exceptions import RefreshError, TransportError
        from google.auth.transport.requests import Request

        try:
            self._credentials.refresh(Request())
        except RefreshError as error:
            why = error.args[0] if error.args else error
            raise AuthenticationError(
                f"the Google credentials could not be refreshed: {why}",
                status=401, error_type=LOCAL_CREDENTIALS) from None
        except TransportError:
            raise UnavailableError("cannot reach Google's token endpoint") from None

    async def renew(self) -> bool:
        async with self._lock:
            if self._credentials is None:
                return False
            await asyncio.to_thread(self._refresh)  # the token was revoked or expired early
            return True

    async def identity(self) -> str:
        await self._token()
        who = (getattr(self._credentials, "service_account_email", "")
               or getattr(self._credentials, "account", "") or "user credentials (ADC)")
        return f"{who}, project {self.project}, location {self.region}"

    def hint(self) -> str:
        return (f"check the Google credentials (GOOGLE_APPLICATION_CREDENTIALS), "
                f"GOOGLE_CLOUD_PROJECT ({self.project}) and CLOUD_ML_REGION ({self.region})")


def _key_file_credentials(path: str) -> Any:
    """Credentials from a key file of the two kinds a team puts in .env: a service account's
    key, or a user's application-default credentials. Other kinds (workload identity
    federation) go in the process environment, where google-auth reads them itself."""
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    with open(path, encoding="utf-8") as file:
        info = json.load(file)
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[GOOGLE_SCOPE])
    if kind == "authorized_user":
        return user_credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
            info, [GOOGLE_SCOPE])
    raise ValueError(f"a key file of type {kind!r}: set GOOGLE_APPLICATION_CREDENTIALS in the "
                     "process environment for this kind")


def make_provider(settings: ProviderSettings, api_key: str, anthropic_url: str) -> Provider:
    if settings.name == "bedrock":
        return Bedrock(settings)
    if settings.name == "vertex":
        return Vertex(settings)
    return AnthropicAPI(api_key, settings.base_url or anthropic_url)
