"""The product as shipped: a wheel built from the tracked files, installed into a fresh venv
outside the checkout and started from another folder, answers with the prompts it carries.

An editable install would hide missing package data, so this builds and installs for real
(without dependencies: the new venv borrows this one's site-packages for those).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic import FakeAnthropic, Reply

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in listed.stdout.decode().split("\0") if name]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ folder of a fresh venv with the wheel installed."""
    work = tmp_path_factory.mktemp("shipped")
    source = work / "source"  # only tracked files: a stale build/ must not leak into the wheel
    for name in tracked_files():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=120)
    [wheel] = dist.glob("supportbot-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=120)
    # Dependencies come from this venv's site-packages, listed after the new venv's own.
    new_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                               "get_paths()['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip()
    Path(new_site, "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv / "bin"


def clean_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUPPORTBOT_", "ANTHROPIC_", "SLACK_", "DISCORD_", "PYTHON"))}
    return {**env, "SUPPORTBOT_DB": str(folder / "bot.db"), "SUPPORTBOT_FALLBACK_MODEL": "",
            **extra}


async def command(bin_dir: Path, folder: Path, env: dict[str, str], *args: str,
                  stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "supportbot"), *args, cwd=folder, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_installed_wheel_answers_from_another_folder(
    installed: Path, tmp_path: Path
) -> None:
    async with FakeAnthropic(delta_interval=0.01, default_words=30) as model:
        env = clean_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url)
        code, out, err = await command(installed, tmp_path, env, "chat",
                                       stdin=b"How do I rotate my key?\n")
        assert code == 0, err
        assert f"bot> {model.last_text_sent()}" in out and model.last_text_sent()
        system = model.requests[-1].body["system"][0]["text"]
        shipped = (ROOT / "prompts" / "system.md").read_text().strip()
        assert system.startswith(shipped)  # the prompts came from inside the wheel

        code, out, err = await command(installed, tmp_path, env, "check")
    assert code == 0, out + err
    assert "/site-packages/bot/default_prompts (shipped with supportbot)" in out
    assert str(ROOT) not in out  # nothing was read from the checkout


async def test_supportbot_prompts_replaces_the_shipped_ones(
    installed: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "system.md").write_text("You are the ACME helper. Answer in one line.\n")
    async with FakeAnthropic() as model:
        model.script(Reply(text="Hi from ACME."))
        env = clean_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url,
                        SUPPORTBOT_PROMPTS=str(prompts))
        code, out, err = await command(installed, tmp_path, env, "chat", stdin=b"hello\n")
    assert code == 0, err
    assert "bot> Hi from ACME." in out
    assert model.requests[-1].body["system"][0]["text"] == "You are the ACME helper. " \
        "Answer in one line."


async def test_every_module_of_the_checkout_is_in_the_wheel(
    installed: Path, tmp_path: Path
) -> None:
    # A package left out of pyproject.toml's list imports fine from a checkout, and not at all
    # from the wheel (it happened to bot.adapters.discord).
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "bot").rglob("*.py")
    )
    script = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\n"
    proc = await asyncio.create_subprocess_exec(
        str(installed / "python"), "-c", script, *modules, cwd=tmp_path,
        env=clean_env(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-600:]
    assert "bot.adapters.discord.client" in modules
