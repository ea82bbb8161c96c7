from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.fakes.anthropic import FakeAnthropic


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.db")
    yield opened
    await opened.close()
