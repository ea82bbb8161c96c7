from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.docs_site import DocsSite
from tests.localonly import sitecustomize  # noqa: F401  (installs the local-only guard)


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.db")
    yield opened
    await opened.close()


@pytest.fixture
async def elsewhere() -> AsyncIterator[DocsSite]:
    other = DocsSite()
    other.url = await other.server.start()
    yield other
    await other.server.stop()


@pytest.fixture
async def site(elsewhere: DocsSite) -> AsyncIterator[DocsSite]:
    docs = DocsSite(elsewhere.url)
    docs.url = await docs.server.start()
    yield docs
    await docs.server.stop()
