"""Claude as Amazon Bedrock and Google Vertex AI serve it, for the fake Anthropic server.

Bedrock's Messages API endpoint (`POST /anthropic/v1/messages`, as on bedrock-mantle) takes a
Bedrock API key as a bearer token or a SigV4 signature, which is recomputed here from the
request with botocore and the fake's own credentials: a wrong secret, region, service or an
old date is refused the way AWS refuses it (403, `x-amzn-errortype`, `{"message": …}`).

Vertex's `:streamRawPredict` / `:rawPredict` takes the model in the URL (never in the body),
`anthropic_version: vertex-2023-10-16` in the body, and an OAuth access token that this fake
issued at `/oauth2/token` and has not expired or revoked. Tokens are issued to a service
account, as Application Default Credentials from a key file get them: a JWT signed with the
account's RSA key (made per fake), verified here. Errors are Google's
`{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

BEDROCK_PATH = "/anthropic/v1/messages"
VERTEX_PATH = "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{call}"
TOKEN_PATH = "/oauth2/token"
VERTEX_VERSION = "vertex-2023-10-16"
SIGNATURE_WINDOW = 300  # seconds a SigV4 date may differ from the server's clock


class CloudError(Exception):
    """A refusal in the cloud's own error format."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def aws_error(status: int, kind: str, message: str) -> CloudError:
    return CloudError(web.json_response({"message": message}, status=status,
                                        headers={"x-amzn-errortype": f"{kind}:http://internal"}))


def google_error(status: int, kind: str, message: str) -> CloudError:
    return CloudError(web.json_response(
        {"error": {"code": status, "message": message, "status": kind}}, status=status))


@dataclass
class AwsAccount:
    """Who may call the fake Bedrock, and where it runs."""

    access_key: str = "AKIDFAKEEXAMPLE0001"
    secret_key: str = "fake-secret-key-for-tests-only"
    region: str = "us-east-1"
    service: str = "bedrock-mantle"
    api_key: str | None = "fake-bedrock-api-key"
    signed: int = 0  # requests accepted by signature
    bearer: int = 0  # requests accepted by API key

    def check(self, request: web.Request, body: bytes) -> None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if self.api_key is None or not hmac.compare_digest(auth[7:], self.api_key):
                raise aws_error(403, "UnrecognizedClientException",
                                "The security token included in the request is invalid.")
            self.bearer += 1
            return
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            raise aws_error(403, "MissingAuthenticationTokenException",
                            "Missing Authentication Token")
        self._check_signature(request, body, auth)
        self.signed += 1

    def _check_signature(self, request: web.Request, body: bytes, auth: str) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        access_key, day, region, service, _ = parts.get("Credential", "////").split("/", 4)
        if access_key != self.access_key:
            raise aws_error(403, "UnrecognizedClientException",
                            "The security token included in the request is invalid.")
        if region != self.region:
            raise aws_error(403, "InvalidSignatureException",
                            f"Credential should be scoped to a valid region, not '{region}'.")
        if service != self.service:
            raise aws_error(403, "InvalidSignatureException", "Credential should be scoped to "
                            f"correct service: '{self.service}'.")
        amz_date = request.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise aws_error(400, "IncompleteSignatureException", "X-Amz-Date is missing") from None
        if abs(time.time() - signed_at.timestamp()) > SIGNATURE_WINDOW or day != amz_date[:8]:
            raise aws_error(403, "InvalidSignatureException", "Signature expired: "
                            f"{amz_date} is now earlier than the allowed window.")
        signed_headers = parts.get("SignedHeaders", "").split(";")
        url = f"http://{request.host}{request.path_qs}"
        rebuilt = AWSRequest(method=request.method, url=url, data=body, headers={
            name: request.headers.get(name, "") for name in signed_headers if name != "host"})
        rebuilt.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key), service, region)
        canonical = signer.canonical_request(rebuilt)
        expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
        if not hmac.compare_digest(expected, parts.get("Signature", "")):
            raise aws_error(403, "InvalidSignatureException",
                            "The request signature we calculated does not match the signature "
                            "you provided. Check your AWS Secret Access Key and signing method.")


JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"


def _rsa_key() -> tuple[str, str]:
    """A fresh RSA key pair as PEM (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class GoogleAccount:
    """The fake Vertex project and the service account its tokens are issued to."""

    project: str = "acme-support"
    region: str = "us-east5"
    email: str = "supportbot@acme-support.iam.gserviceaccount.com"
    token_lifetime: int = 3600
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expires at
    issued: int = 0
    keys: tuple[str, str] = field(default_factory=_rsa_key)

    def adc_file(self, token_url: str) -> dict[str, str]:
        """A service account key file (what GOOGLE_APPLICATION_CREDENTIALS names), its token
        endpoint here."""
        return {"type": "service_account", "project_id": self.project,
                "private_key_id": "fake-key-1", "private_key": self.keys[0],
                "client_email": self.email, "client_id": "1234567890",
                "token_uri": token_url}

    def revoke_all(self) -> None:
        self.tokens.clear()

    async def on_token(self, request: web.Request) -> web.Response:
        from google.auth import jwt

        form = await request.post()
        try:
            if form.get("grant_type") != JWT_GRANT:
                raise ValueError("unsupported grant_type")
            # The assertion names Google's token endpoint as its audience, wherever it is sent.
            claims = jwt.decode(  # type: ignore[no-untyped-call]
                str(form.get("assertion", "")), certs=self.keys[1],
                audience=[GOOGLE_TOKEN_URL, str(request.url)])
            if claims.get("iss") != self.email:
                raise ValueError("unknown service account")
        except ValueError as error:
            return web.json_response({"error": "invalid_grant",
                                      "error_description": str(error)}, status=400)
        token = "ya29.fake-" + secrets.token_urlsafe(12)
        self.tokens[token] = time.time() + self.token_lifetime
        self.issued += 1
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime,
                                  "token_type": "Bearer", "scope": "cloud-platform"})

    def check(self, request: web.Request, body: Any) -> tuple[str, bool]:
        """The model and whether to stream, once the token, place and body hold."""
        auth = request.headers.get("authorization", "")
        expires = self.tokens.get(auth.removeprefix("Bearer "), 0.0)
        if not auth.startswith("Bearer ") or expires < time.time():
            raise google_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                               "credentials. Expected OAuth 2 access token, login cookie or "
                               "other valid authentication credential.")
        project, region = request.match_info["project"], request.match_info["region"]
        model, _, verb = request.match_info["call"].partition(":")
        if project != self.project:
            raise google_error(403, "PERMISSION_DENIED",
                               f"Permission denied on resource project {project}.")
        if region != self.region or verb not in ("rawPredict", "streamRawPredict"):
            raise google_error(404, "NOT_FOUND", f"Publisher Model `projects/{project}/"
                               f"locations/{region}/publishers/anthropic/models/{model}` "
                               "not found.")
        if not isinstance(body, dict) or "model" in body:
            raise google_error(400, "INVALID_ARGUMENT",
                               "model: the model is given in the URL, not in the body")
        if body.get("anthropic_version") != VERTEX_VERSION:
            raise google_error(400, "INVALID_ARGUMENT",
                               f"anthropic_version: must be {VERTEX_VERSION}")
        return model.split("@")[0], verb == "streamRawPredict"


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
