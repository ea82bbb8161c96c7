"""The fake Discord's test controls added for the adapter: DM channel ids and the call log."""

from __future__ import annotations

import aiohttp

from tests.fakes.discord import FakeDiscord


async def test_dm_channel_is_the_channel_dms_arrive_in() -> None:
    async with FakeDiscord() as fake:
        await fake.dispatch_message("hi", guild=False)
        await fake.dispatch_message("hi", guild=False, author_id=42)
        assert [m.content for m in fake.messages(fake.dm_channel())] == ["hi"]
        assert fake.dm_channel(42) != fake.dm_channel()


async def test_calls_route_pages_through_the_rest_log() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bot {fake.token}"}
        url = f"{fake.api_url}/channels/{fake.channel_ids[0]}/messages"
        for text in ("one", "two"):
            async with session.post(url, json={"content": text}, headers=auth):
                pass
        async with session.get(fake.base_url + "/_fake/calls?since=1") as response:
            page = await response.json()

    assert page["next"] == 2
    (call,) = page["calls"]
    assert call["json"]["content"] == "two" and call["status"] == 200
    assert call["route"] == "POST /channels/{channel_id}/messages" and call["time"] > 0
