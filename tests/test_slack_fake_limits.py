"""The fake Slack's Tier 3 limits beyond chat.update: each method is its own budget."""

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack


async def test_delete_and_reactions_have_their_own_tier3_windows() -> None:
    async with FakeSlack(tier3_limit=2, update_limit=1) as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        posted = [await client.chat_postMessage(channel=f"C{n}", text="x") for n in range(3)]
        await client.chat_update(channel="C0", ts=posted[0]["ts"], text="edited")
        for n in range(2):  # chat.update's budget is spent; reactions and deletes are not
            await client.reactions_add(channel=f"C{n}", timestamp=posted[n]["ts"], name="eyes")
            await client.chat_delete(channel=f"C{n}", ts=posted[n]["ts"])
        with pytest.raises(SlackApiError) as info:
            await client.chat_delete(channel="C2", ts=posted[2]["ts"])
        assert info.value.response.status_code == 429
        assert fake.count("chat.delete", status=429) == 1 and len(fake.messages("C2")) == 1
