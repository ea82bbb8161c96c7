"""The fake Discord's HTTP plumbing: route table, auth, rate-limit buckets, call log."""

from __future__ import annotations

import math
import time

from aiohttp import web

from tests.fakes.discord_http import (
    API_PREFIX,
    BODY,
    CHANNEL_MESSAGE_ROUTES,
    DEFAULT_ROUTE_LIMIT,
    WRITES,
    DiscordError,
    Handler,
    json_response,
    read_body,
)
from tests.fakes.discord_interactions import DiscordInteractions
from tests.fakes.discord_payloads import (
    Bucket,
    RateVerdict,
    error_body,
    rate_limit_body,
)
from tests.fakes.discord_records import (
    RestCall,
)


class DiscordRouting(DiscordInteractions):
    """The /api/v10 middleware (auth, buckets, error bodies, RestCall log) and route table."""

    # --- HTTP plumbing --------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        started = time.monotonic()
        route = self._route_name(request)
        response, verdict = await self._guarded(request, handler, route, started)
        if verdict is not None:
            response.headers.update(verdict.headers())
        # discord.py treats a 429 without a Via header as a Cloudflare ban, so send it always.
        response.headers["Via"] = "1.1 google"
        body = request.get(BODY)
        self.calls.append(
            RestCall(
                method=request.method,
                path=request.path[len(API_PREFIX) :],
                route=route,
                json=body.json if body else None,
                time=started,
                status=response.status,
                query=request.query_string,
            )
        )
        return response

    async def _guarded(
        self, request: web.Request, handler: Handler, route: str, now: float
    ) -> tuple[web.StreamResponse, RateVerdict | None]:
        missing = request.match_info.http_exception
        if missing is not None:
            return json_response(
                missing.status, error_body(0, f"{missing.status}: {missing.reason}")
            ), None
        if not self._authorized(request, route):
            return json_response(401, error_body(0, "401: Unauthorized")), None
        if request.match_info.get("channel_id") in {str(c) for c in self.no_access}:
            # The bot was removed from the channel, or lost its permissions there.
            return json_response(403, error_body(50001, "Missing Access")), None
        injected = self._injected_fault(route)
        if injected is not None:
            return injected, None
        refused = self._over_global_limit(route, now)
        if refused is not None:
            return refused, None
        verdict = self._bucket(request, route).take(now)
        if not verdict.allowed:
            # A refused call changes nothing: the handler never runs.
            self.rate_limited += 1
            return json_response(429, rate_limit_body(verdict.retry_after)), verdict
        try:
            request[BODY] = await read_body(request)
            return await handler(request), verdict
        except DiscordError as exc:
            return json_response(exc.status, exc.body), verdict

    def _injected_fault(self, route: str) -> web.Response | None:
        method, path = route.split(" ", 1)
        statuses = self.faults.get(method)
        if path not in CHANNEL_MESSAGE_ROUTES or not statuses:
            return None
        status = statuses.pop(0)
        if status != 429:
            return json_response(status, error_body(0, f"{status}: Server Error"))
        response = json_response(429, rate_limit_body(self.fault_retry_after))
        response.headers.update({"Retry-After": str(math.ceil(self.fault_retry_after)),
                                 "X-RateLimit-Scope": "shared"})
        return response

    def _over_global_limit(self, route: str, now: float) -> web.Response | None:
        """A bot makes at most 50 requests a second over all routes; interaction endpoints
        are not bound by it (docs: topics/rate-limits.mdx, "Global Rate Limit"). The 429 has
        no route headers, only Retry-After, X-RateLimit-Global and X-RateLimit-Scope."""
        if route.split(" ", 1)[1].startswith(("/webhooks/", "/interactions/")):
            return None
        verdict = self._global_bucket.take(now)
        if verdict.allowed:
            return None
        self.rate_limited += 1
        response = json_response(429, rate_limit_body(verdict.retry_after, is_global=True))
        response.headers.update({
            "Retry-After": str(math.ceil(verdict.retry_after)),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        })
        return response

    def _route_name(self, request: web.Request) -> str:
        resource = request.match_info.route.resource
        template = resource.canonical[len(API_PREFIX) :] if resource else request.path
        return f"{request.method} {template}"

    def _authorized(self, request: web.Request, route: str) -> bool:
        # Interaction callbacks and webhook calls are authorised by the token in the path.
        path = route.split(" ", 1)[1]
        if path.startswith(("/webhooks/", "/interactions/")):
            return True
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _bucket(self, request: web.Request, route: str) -> Bucket:
        method, path = route.split(" ", 1)
        info = request.match_info
        counter = ""
        if method in WRITES and path in CHANNEL_MESSAGE_ROUTES:
            # Creating and editing messages answer with one X-RateLimit-Bucket hash, yet count
            # apart: each has its own `limit` per `window` in a channel (discord/discord-api-docs
            # #8073, 2026-01-17; the shared hash since #1442). Deleting has a hash of its own
            # (discord-api-docs#1135).
            name = "channel-message-delete" if method == "DELETE" else "channel-message-write"
            major, (limit, window), counter = info["channel_id"], self.channel_limit, method
        elif method in WRITES and path.startswith("/webhooks/{application_id}/{token}"):
            name, major, (limit, window) = "interaction-webhook", info["token"], self.webhook_limit
        else:
            major = info.get("channel_id") or info.get("guild_id") or info.get("token") or ""
            name, (limit, window) = route, DEFAULT_ROUTE_LIMIT
        key = (name, major, counter)
        if key not in self._buckets:
            self._buckets[key] = Bucket(name, limit, window)
        return self._buckets[key]

    def _routes(self) -> list[tuple[str, str, Handler]]:
        app, guild = "/applications/{application_id}", "/guilds/{guild_id}"
        message = "/channels/{channel_id}/messages/{message_id}"
        hook = "/webhooks/{application_id}/{token}"
        return [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway),
            ("GET", "/users/@me", self._get_me),
            ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", app + "/commands", self._get_commands),
            ("PUT", app + "/commands", self._put_commands),
            ("POST", app + "/commands", self._post_command),
            ("GET", app + guild + "/commands", self._get_commands),
            ("PUT", app + guild + "/commands", self._put_commands),
            ("POST", app + guild + "/commands", self._post_command),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("GET", message, self._get_message),
            ("PATCH", message, self._patch_message),
            ("DELETE", message, self._delete_message),
            ("PUT", message + "/reactions/{emoji}/@me", self._put_reaction),
            ("POST", message + "/threads", self._post_message_thread),
            ("POST", "/channels/{channel_id}/typing", self._post_typing),
            ("POST", "/channels/{channel_id}/threads", self._post_thread),
            ("PUT", "/channels/{channel_id}/thread-members/{user_id}", self._put_thread_member),
            ("POST", "/users/@me/channels", self._post_dm),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._post_callback),
            ("POST", hook, self._post_followup),
            ("GET", hook + "/messages/{message_id}", self._get_webhook_message),
            ("PATCH", hook + "/messages/{message_id}", self._patch_webhook_message),
            ("DELETE", hook + "/messages/{message_id}", self._delete_webhook_message),
        ]
