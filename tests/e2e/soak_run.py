"""The 2-minute soak, started as a separate process when the session begins so that its two
minutes of traffic pass while the other tests run; tests/e2e/test_soak.py waits for it and
judges it. A session that does not collect that test starts nothing."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
MINUTES = 2.0


@dataclass
class SoakRun:
    process: subprocess.Popen[bytes]
    folder: tempfile.TemporaryDirectory[str]
    log: IO[bytes]

    @property
    def figures_file(self) -> Path:
        return Path(self.folder.name) / "soak.json"

    @property
    def log_file(self) -> Path:
        return Path(self.folder.name) / "soak.log"


KEY = pytest.StashKey[SoakRun]()


def start(config: pytest.Config) -> None:
    folder = tempfile.TemporaryDirectory(prefix="supportbot-soak-")
    log = (Path(folder.name) / "soak.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--minutes", str(MINUTES), "--out",
         str(Path(folder.name) / "soak.json")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    config.stash[KEY] = SoakRun(process, folder, log)


def stop(config: pytest.Config) -> None:
    run = config.stash.get(KEY, None)
    if run is None:
        return
    if run.process.poll() is None:
        run.process.terminate()
        try:
            run.process.wait(10)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait(10)
    run.log.close()
    run.folder.cleanup()
