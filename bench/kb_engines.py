"""`supportbot kb add` then `supportbot kb eval` on every evaluation set, once with the store
in SQLite and once in PostgreSQL, the shipped CLI both times: the same sets, side by side.

With PostgreSQL the knowledge base is indexed into each instance's own file
(SUPPORTBOT_KB_INDEX), so its figures should equal SQLite's; this shows that they do and that
the CLI works unchanged on a postgresql:// URL.

    python -m bench.kb_engines     # writes bench/results/kb_engines.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.kb import ROOT, SETS, docs_of
from bench.store_window import postgres_schema


async def cli(folder: Path, db: str, *args: str) -> str:
    env = {"SUPPORTBOT_DB": db, "SUPPORTBOT_KB_INDEX": str(folder / "kb.db"),
           "SUPPORTBOT_KB": "", "ANTHROPIC_API_KEY": "", "LOG_LEVEL": "WARNING",
           "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=folder, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 1800)
    if proc.returncode:
        raise SystemExit(f"supportbot {' '.join(args)} failed: {err.decode()[-2000:]}")
    return out.decode()


async def one_engine(db: str, folder: Path, docs: Path, questions: Path) -> dict[str, Any]:
    await cli(folder, db, "kb", "add", str(docs))
    report = json.loads(await cli(folder, db, "kb", "eval", str(questions), "--json"))
    return {"hit_at_5": report["ours"]["hit"]["5"], "mrr": report["ours"]["mrr"],
            "baseline_hit_at_5": report["baseline"]["hit"]["5"],
            "gate_recall": report["gate_recall"],
            "declined_answerable": report["declined_answerable"]}


async def main() -> None:
    figures: dict[str, dict[str, Any]] = {}
    for pin in SETS:
        docs, questions = docs_of(pin), ROOT / "evals" / pin.name / "questions.jsonl"
        with tempfile.TemporaryDirectory() as lite, tempfile.TemporaryDirectory() as pg:
            sqlite = await one_engine(str(Path(lite) / "bot.db"), Path(lite), docs, questions)
            async with postgres_schema() as url:
                postgresql = await one_engine(url, Path(pg), docs, questions)
        figures[pin.name] = {"sqlite": sqlite, "postgresql": postgresql}
        print(f"{pin.name:>10}  SQLite hit@5 {sqlite['hit_at_5']:.2f} MRR {sqlite['mrr']:.2f}"
              f" | PostgreSQL hit@5 {postgresql['hit_at_5']:.2f} MRR {postgresql['mrr']:.2f}"
              f" | {'same' if sqlite == postgresql else 'DIFFERENT'}")
    print(f"wrote {write_result('kb_engines', {'sets': figures})}")


if __name__ == "__main__":
    asyncio.run(main())
