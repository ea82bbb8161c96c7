"""Checks on the fake Slack itself, driven by the real slack_sdk clients over local sockets."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes import slack_events as ev
from tests.fakes.slack import FakeSlack

SECRET = "test-signing-secret"
Listener = Callable[[AsyncBaseSocketModeClient, SocketModeRequest], Awaitable[None]]


def bot(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


async def ack(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
    await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


@contextlib.asynccontextmanager
async def socket_client(fake: FakeSlack, listener: Listener) -> AsyncIterator[SocketModeClient]:
    """A real slack_sdk Socket Mode client connected to the fake."""
    web_client = AsyncWebClient(base_url=fake.api_url)
    client = SocketModeClient(app_token=fake.app_token, web_client=web_client)
    client.socket_mode_request_listeners.append(listener)
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        await fake.wait_connected(5)
        yield client
    finally:
        await client.close()  # type: ignore[no-untyped-call]


# ----- Web API ---------------------------------------------------------------------------------


async def test_post_then_update_keeps_one_message_edited_in_place() -> None:
    async with FakeSlack() as fake:
        client = bot(fake)
        posted = await client.chat_postMessage(channel="C1", text="Thinking…", thread_ts="1.000001")
        await client.chat_update(channel="C1", ts=posted["ts"], text="The answer")
        [msg] = fake.messages("C1")
        assert (msg.text, msg.edits, msg.thread_ts) == ("The answer", 1, "1.000001")
        assert (msg.user, msg.bot_id) == ("UBOT", "BBOT")
        assert posted["message"]["bot_id"] == "BBOT"
        assert fake.calls[0].params["channel"] == "C1"  # JSON body was read
        assert fake.count("chat.update") == 1


async def test_update_over_4000_bytes_is_msg_too_long_and_changes_nothing() -> None:
    async with FakeSlack() as fake:
        client = bot(fake)
        posted = await client.chat_postMessage(channel="C1", text="start")
        for text in ("x" * 4001, "é" * 2001):  # 4,001 and 4,002 UTF-8 bytes
            with pytest.raises(SlackApiError) as info:
                await client.chat_update(channel="C1", ts=posted["ts"], text=text)
            assert info.value.response["error"] == "msg_too_long"
        assert fake.messages("C1")[0].text == "start"
        for text in ("x" * 4000, "é" * 2000):
            await client.chat_update(channel="C1", ts=posted["ts"], text=text)
        assert fake.count("chat.update", error="msg_too_long") == 2


async def test_update_errors_for_missing_and_foreign_messages() -> None:
    async with FakeSlack() as fake:
        fake.add_history("C1", [{"ts": "1700000000.000100", "text": "hi", "user": "U1"}])
        client = bot(fake)
        for ts, error in (
            ("1700000000.000100", "cant_update_message"),
            ("9.9", "message_not_found"),
        ):
            with pytest.raises(SlackApiError) as info:
                await client.chat_update(channel="C1", ts=ts, text="edit")
            assert info.value.response["error"] == error


async def test_51st_update_in_the_window_is_429_with_retry_after() -> None:
    async with FakeSlack() as fake:
        client = bot(fake)
        posted = await client.chat_postMessage(channel="C1", text="0")
        for n in range(50):
            await client.chat_update(channel="C1", ts=posted["ts"], text=str(n))
        with pytest.raises(SlackApiError) as info:
            await client.chat_update(channel="C1", ts=posted["ts"], text="too many")
        response = info.value.response
        assert (response.status_code, response["error"]) == (429, "ratelimited")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert fake.messages("C1")[0].text == "49"  # the 429'd call changed nothing
        assert fake.rate_limited == 1 and fake.count("chat.update", status=429) == 1


async def test_update_budget_is_a_sliding_window_shared_by_all_channels() -> None:
    async with FakeSlack(update_limit=2, update_window=0.6) as fake:
        client = bot(fake)
        a = await client.chat_postMessage(channel="C1", text="a")
        b = await client.chat_postMessage(channel="C2", text="b")
        await client.chat_update(channel="C1", ts=a["ts"], text="a1")
        await client.chat_update(channel="C2", ts=b["ts"], text="b1")
        with pytest.raises(SlackApiError) as info:
            await client.chat_update(channel="C1", ts=a["ts"], text="a2")
        assert info.value.response.headers["Retry-After"] == "1"
        await asyncio.sleep(0.65)
        await client.chat_update(channel="C1", ts=a["ts"], text="a2")


async def test_post_message_is_limited_per_channel_with_a_burst() -> None:
    async with FakeSlack(post_per_channel_per_second=1.0, post_burst=3) as fake:
        client = bot(fake)
        for n in range(3):
            await client.chat_postMessage(channel="C1", text=str(n))
        with pytest.raises(SlackApiError) as info:
            await client.chat_postMessage(channel="C1", text="burst over")
        assert info.value.response.status_code == 429
        await client.chat_postMessage(channel="C2", text="other channel")
        assert len(fake.messages("C1")) == 3


async def test_tokens_are_checked() -> None:
    async with FakeSlack() as fake:
        cases = [
            (AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url), "invalid_auth"),
            (AsyncWebClient(base_url=fake.api_url), "not_authed"),
            (AsyncWebClient(token=fake.app_token, base_url=fake.api_url), "not_allowed_token_type"),
        ]
        for client, error in cases:
            with pytest.raises(SlackApiError) as info:
                await client.chat_postMessage(channel="C1", text="hi")
            assert info.value.response["error"] == error
        with pytest.raises(SlackApiError) as info:
            await bot(fake).apps_connections_open(app_token=fake.bot_token)
        assert info.value.response["error"] == "not_allowed_token_type"
        assert fake.messages("C1") == []


async def test_token_counts_from_form_body_but_not_json_body_or_query() -> None:
    async with FakeSlack() as fake, aiohttp.ClientSession() as http:
        url, token = fake.api_url + "chat.postMessage", fake.bot_token
        form = {"token": token, "channel": "C1", "text": "hi", "blocks": "[]"}
        async with http.post(url, data=form) as resp:
            assert (await resp.json())["ok"] is True
        message = {"token": token, "channel": "C1", "text": "json"}
        async with http.post(url, json=message) as resp:
            assert (await resp.json())["error"] == "not_authed"
        async with http.post(url, params={"token": token}, data={"channel": "C1"}) as resp:
            assert (await resp.json())["error"] == "not_authed"
        async with http.post(url, data="{", headers={"Content-Type": "application/json"}) as resp:
            assert (await resp.json())["error"] == "invalid_json"
        assert [m.text for m in fake.messages("C1")] == ["hi"]
        assert all("token" not in call.params for call in fake.calls)


async def test_conversations_replies_pages_oldest_first() -> None:
    async with FakeSlack() as fake:
        parent = "1700000000.000100"
        replies = [
            {"ts": f"1700000000.00020{n}", "text": f"r{n}", "thread_ts": parent} for n in range(5)
        ]
        fake.add_history("C1", [*reversed(replies), {"ts": parent, "text": "question"}])
        client, pages, cursor = bot(fake), [], ""
        for _ in range(10):  # bounded paging loop
            page = await client.conversations_replies(
                channel="C1", ts=parent, limit=2, cursor=cursor or None
            )
            pages.append(page)
            cursor = page["response_metadata"]["next_cursor"]
            if not page["has_more"]:
                break
        texts = [m["text"] for page in pages for m in page["messages"]]
        assert texts == ["question", "r0", "r1", "r2", "r3", "r4"] and len(pages) == 3
        first = await client.conversations_replies(channel="C1", ts=parent)
        assert first["messages"][0]["reply_count"] == 5


async def test_small_methods_answer_like_slack() -> None:
    async with FakeSlack() as fake:
        client = bot(fake)
        assert (await client.auth_test())["user_id"] == "UBOT"
        posted = await client.chat_postMessage(channel="D1", text="hi")
        await client.reactions_add(channel="D1", timestamp=posted["ts"], name="eyes")
        with pytest.raises(SlackApiError) as info:
            await client.reactions_add(channel="D1", timestamp=posted["ts"], name="eyes")
        assert info.value.response["error"] == "already_reacted"
        await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.1", status="…")
        assert fake.statuses == [("D1", "1.1", "…")]
        assert (await client.conversations_info(channel="D1"))["channel"]["is_im"] is True
        assert (await client.users_info(user="U9"))["user"]["is_bot"] is False
        await client.chat_delete(channel="D1", ts=posted["ts"])
        assert fake.messages("D1") == []


# ----- native streaming ------------------------------------------------------------------------


async def test_native_streaming_with_the_sdk_helper() -> None:
    async with FakeSlack(native_streaming=True) as fake:
        client = bot(fake)
        stream = await client.chat_stream(
            channel="C1",
            thread_ts="1.1",
            buffer_size=5,
            recipient_team_id="T0001",
            recipient_user_id="U1",
        )
        for word in ("Hello ", "there, ", "friend."):
            await stream.append(markdown_text=word)
        assert fake.messages("C1")[0].streaming is True
        await stream.stop()
        [msg] = fake.messages("C1")
        assert (msg.text, msg.streaming) == ("Hello there, friend.", False)
        with pytest.raises(SlackApiError) as info:
            await client.chat_appendStream(channel="C1", ts=msg.ts, markdown_text="late")
        assert info.value.response["error"] == "message_not_in_streaming_state"


async def test_streaming_methods_are_unknown_unless_enabled() -> None:
    async with FakeSlack() as fake:
        with pytest.raises(SlackApiError) as info:
            await bot(fake).chat_startStream(channel="C1", thread_ts="1.1")
        assert info.value.response["error"] == "unknown_method"


async def test_append_stream_has_its_own_budget() -> None:
    async with FakeSlack(native_streaming=True, append_limit=3, update_limit=1) as fake:
        client = bot(fake)
        started = await client.chat_startStream(channel="C1", thread_ts="1.1")
        for _ in range(3):
            await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="x")
        with pytest.raises(SlackApiError) as info:
            await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="x")
        assert info.value.response.status_code == 429
        assert fake.messages("C1")[0].text == "xxx"


# ----- files -------------------------------------------------------------------------------------


async def test_file_download_needs_the_bot_token() -> None:
    async with FakeSlack() as fake, aiohttp.ClientSession() as http:
        file = fake.add_file("shot.png", "image/png", b"\x89PNG-data")
        auth = {"Authorization": f"Bearer {fake.bot_token}"}
        for url in (file["url_private"], file["url_private_download"]):
            async with http.get(url, headers=auth) as resp:
                assert (resp.status, await resp.read()) == (200, b"\x89PNG-data")
                assert resp.content_type == "image/png"
        async with http.get(file["url_private"]) as resp:
            assert resp.content_type == "text/html" and "<html" in await resp.text()
        assert file["size"] == 9 and fake.downloads[-1][1] is False


# ----- Events API signing ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def verifying_app() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A tiny Events API endpoint that checks signatures with slack_sdk's verifier."""
    verifier, seen = SignatureVerifier(SECRET), []

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(dict(request.headers))
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        payload = await request.json()
        return web.json_response({"challenge": payload.get("challenge")})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", seen
    finally:
        await runner.cleanup()


async def test_signed_event_verifies_with_slack_sdk() -> None:
    async with verifying_app() as (url, seen):
        body = ev.event_callback(ev.app_mention("<@UBOT> hi"))
        good = await ev.send_signed_event(url, body, SECRET, retry_num=1)
        bad = await ev.send_signed_event(url, body, SECRET, bad_signature=True)
        stale = await ev.send_signed_event(url, body, SECRET, timestamp=1_600_000_000)
        assert (good.status, bad.status, stale.status) == (200, 401, 401)
        assert seen[0]["X-Slack-Retry-Num"] == "1"
        assert seen[0]["X-Slack-Retry-Reason"] == "http_timeout"
        assert "X-Slack-Retry-Num" not in seen[1] and good.elapsed < 3


async def test_url_verification_challenge_round_trip() -> None:
    async with verifying_app() as (url, _):
        body = ev.url_verification("abc123")
        response = await ev.send_signed_event(url, body, SECRET)
        assert response.json() == {"challenge": "abc123"}


def test_signature_matches_slack_sdk() -> None:
    expected = SignatureVerifier(SECRET).generate_signature(timestamp="1700000000", body="{}")
    assert ev.signature(b"{}", SECRET, 1_700_000_000) == expected


# ----- payload builders ------------------------------------------------------------------------


def test_payload_builders_have_slack_shapes() -> None:
    stamps = [ev.next_ts() for _ in range(100)]
    assert stamps == sorted(stamps, key=ev.ts_key) and len(set(stamps)) == 100
    body = ev.event_callback(ev.message("hi", channel="D1"), "T9")
    assert body["type"] == "event_callback" and body["event_id"].startswith("Ev")
    assert body["event"]["channel_type"] == "im" and body["authorizations"][0]["is_bot"]
    changed = ev.message("new", subtype="message_changed", ts="1.1", previous_text="old")
    assert changed["message"]["text"] == "new" and changed["previous_message"]["text"] == "old"
    deleted = ev.message(subtype="message_deleted", ts="1.1")
    assert deleted["deleted_ts"] == "1.1" and deleted["hidden"] is True
    assert "user" not in ev.message("x", subtype="bot_message")
    mention = ev.app_mention("<@UBOT> look", files=[{"id": "F1"}], thread_ts="1.1")
    assert mention["files"] == [{"id": "F1"}] and mention["thread_ts"] == "1.1"


# ----- Socket Mode -----------------------------------------------------------------------------


async def test_socket_mode_client_receives_and_acks_an_event() -> None:
    received: list[SocketModeRequest] = []

    async def listener(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await ack(client, req)

    async with FakeSlack() as fake, socket_client(fake, listener):
        envelope_id = await fake.push_event(ev.app_mention("<@UBOT> help"))
        await fake.wait_for(lambda: envelope_id in fake.acks, 5)
        [req] = received
        assert (req.type, req.retry_attempt, req.accepts_response_payload) == (
            "events_api",
            0,
            False,
        )
        assert req.payload["event"]["type"] == "app_mention"
        assert 0 <= fake.acks[envelope_id] < 3
        assert fake.count("apps.connections.open") == 1


async def test_unacked_event_is_redelivered_until_acked() -> None:
    received: list[SocketModeRequest] = []

    async def ack_only_retries(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        if req.retry_attempt:
            await ack(client, req)

    async with FakeSlack(ack_timeout=0.2, max_redeliveries=2) as fake:
        async with socket_client(fake, ack_only_retries):
            first = await fake.push_event(ev.app_mention("<@UBOT> slow"))
            await fake.wait_for(lambda: len(fake.acks) == 1, 5)
            await asyncio.sleep(0.3)  # nothing more arrives once acked
        assert [(r.retry_attempt, r.retry_reason) for r in received] == [(0, ""), (1, "timeout")]
        assert len({r.payload["event_id"] for r in received}) == 1
        assert first not in fake.acks


async def test_never_acked_event_stops_after_max_redeliveries() -> None:
    async def ignore(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        return None

    async with FakeSlack(ack_timeout=0.1, max_redeliveries=2) as fake:
        async with socket_client(fake, ignore):
            await fake.push_event(ev.message("hello", channel="D1"))
            await fake.wait_for(lambda: len(fake.deliveries) == 3, 5)
            await asyncio.sleep(0.25)
        assert [d.retry_attempt for d in fake.deliveries] == [0, 1, 2]


async def test_echo_of_bot_posts_and_edits() -> None:
    events: list[dict[str, object]] = []

    async def listener(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        events.append(req.payload["event"])
        await ack(client, req)

    async with FakeSlack(echo_bot_messages=True) as fake, socket_client(fake, listener):
        client = bot(fake)
        posted = await client.chat_postMessage(channel="C1", text="hi")
        await client.chat_update(channel="C1", ts=posted["ts"], text="hi!")
        await fake.wait_for(lambda: len(events) == 2, 5)
        assert events[0]["bot_id"] == "BBOT" and events[0]["user"] == "UBOT"
        assert events[1]["subtype"] == "message_changed"


async def test_disconnect_makes_the_client_reconnect() -> None:
    async with FakeSlack() as fake, socket_client(fake, ack):
        await fake.send_disconnect()
        await fake.wait_for(lambda: fake.count("apps.connections.open") == 2, 5)
        await fake.wait_connected(5)


# ----- CLI -------------------------------------------------------------------------------------


async def test_cli_prints_ready_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.slack",
        "--port",
        "0",
        "--update-limit",
        "5",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith("READY http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(line.split()[1] + "/_fake/stats") as resp:
                assert (await resp.json())["rate_limited"] == 0
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
