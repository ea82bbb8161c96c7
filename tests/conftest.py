from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.databases import ENGINES, drop_redis_keys, postgres_schema, redis_prefix_or_skip
from tests.e2e import soak_run
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.docs_site import DocsSite
from tests.localonly import sitecustomize  # noqa: F401  (installs the local-only guard)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.nodeid.startswith("tests/e2e/test_soak.py") for item in session.items):
        soak_run.start(session.config)  # its two minutes pass while the other tests run


def pytest_unconfigure(config: pytest.Config) -> None:
    soak_run.stop(config)


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.db")
    yield opened
    await opened.close()


@pytest.fixture(params=ENGINES)
async def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """SUPPORTBOT_DB for a test that runs on both engines: a file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "bot.db")
        return
    async with postgres_schema() as url:
        yield url


@pytest.fixture
async def any_store(db_target: str, tmp_path: Path) -> AsyncIterator[Store]:
    """The store on each engine in turn (tests that are about storage use this)."""
    opened = await Store.open(db_target if "://" in db_target else Path(db_target),
                              tmp_path / "kb.db")
    yield opened
    await opened.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of its own on the test Redis, its keys deleted afterwards."""
    prefix = await redis_prefix_or_skip()
    yield prefix
    await drop_redis_keys(prefix)


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
