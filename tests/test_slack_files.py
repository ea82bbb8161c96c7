"""Shared files: images downloaded with the bot token from the fake Slack; the rest become notes."""

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.adapters.slack.events import SlackFile, files_of
from bot.adapters.slack.files import MAX_IMAGE_DOWNLOAD, FileFetcher, unreadable
from bot.conversation import Image
from tests.fakes.slack import FakeSlack

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_images_are_downloaded_with_the_bot_token(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    files = files_of([slack.add_file("shot.png", "image/png", PNG),
                      slack.add_file("notes.txt", "text/plain", b"hello")])
    got = await FileFetcher(http, slack.bot_token, slack.api_url).fetch(files)
    assert got.images == (Image("image/png", PNG),)
    assert got.notes == ("notes.txt was attached but I can't read that type of file",)
    assert slack.downloads == [(slack.downloads[0][0], True)]


async def test_without_access_the_sign_in_page_becomes_a_note(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    files = files_of([slack.add_file("shot.png", "image/png", PNG)])
    got = await FileFetcher(http, "xoxb-revoked", slack.api_url).fetch(files)
    assert got.images == ()
    assert got.notes == ("shot.png was attached but I couldn't open it (no access to the file)",)


async def test_the_token_never_goes_to_other_hosts(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    fetcher = FileFetcher(http, slack.bot_token, "https://slack.com/api/")
    files = files_of([slack.add_file("shot.png", "image/png", PNG)])  # on 127.0.0.1
    got = await fetcher.fetch(files)
    assert got.images == () and slack.downloads == []
    assert fetcher.trusted("https://files.slack.com/files-pri/T1-F1/a.png")
    assert not fetcher.trusted("https://files.slack.com.evil.example/a.png")


async def test_an_image_larger_than_it_claimed_is_cut_off(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    raw = slack.add_file("big.png", "image/png", b"0" * (MAX_IMAGE_DOWNLOAD + 1))
    raw["size"] = 10  # the listed size is only a hint
    got = await FileFetcher(http, slack.bot_token, slack.api_url).fetch(files_of([raw]))
    assert got.images == () and got.notes[0].startswith("big.png is too large")


def test_what_is_not_downloaded() -> None:
    big = SlackFile("big.jpg", "image/jpeg", MAX_IMAGE_DOWNLOAD + 1, "https://files.slack.com/x")
    assert unreadable(big) == "big.jpg is too large for me to look at (images up to 3.75 MB)"
    assert unreadable(SlackFile("a.heic", "image/heic", 10, "u")) is not None
    assert unreadable(SlackFile("a.webp", "image/webp", 10, "https://files.slack.com/a")) is None
