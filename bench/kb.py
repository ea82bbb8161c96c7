"""Search quality and speed: the evaluation sets beside the BM25 baseline, and the scale targets.

    python -m bench.kb              # every set, BM25 alone and with the semantic signal
    python -m bench.kb --runs 5     # latency figures as the median of 5 runs
    python -m bench.kb --set pytest # one set, no scale run, nothing written

The docs of each set are not kept in the repository: the pinned sdist is downloaded from PyPI
(`pip download`, the package registry), its sha256 checked, and the docs read from inside it
(see evals/*/SOURCE.md). Scale: 1,000 generated Markdown files (5,000 passages; words drawn
by Zipf's law from a 4,000-word vocabulary, as in real docs), indexed from scratch, then 200
searches. Writes bench/results/kb_eval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import median, percentile, write_result
from bot.embedding import Embedder
from bot.kb_eval import Report, evaluate, load_questions
from bot.knowledge import Knowledge
from bot.store import Store

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "supportbot-bench-docs"


@dataclass(frozen=True)
class EvalSet:
    name: str
    requirement: str  # the pinned sdist
    sha256: str
    docs: str  # the docs root inside the archive
    tuned: bool  # a set the constants in knowledge.py were chosen on


SETS = (
    EvalSet("pip", "pip==25.2",
            "578283f006390f85bb6282dffb876454593d637f5d1be494b5202ce4877e71f2",
            "pip-25.2/docs/html", tuned=True),
    EvalSet("starlette", "starlette==0.47.3",
            "6bc94f839cc176c4858894f1f8908f0ab79dfec1a6b8402f6da9be26ebea52e9",
            "starlette-0.47.3/docs", tuned=False),
    EvalSet("black", "black==25.1.0",
            "33496d5cd1222ad73391352b4ae8da15253c5de89b93a80b3e2c8d9a19ec2666",
            "black-25.1.0/docs", tuned=False),
    EvalSet("pytest", "pytest==8.4.2",
            "86c0d0b93306b961d58d62a4db4879f27fe25513d4b969df351abdddb3c30e01",
            "pytest-8.4.2/doc/en", tuned=True),
    EvalSet("scrapy", "scrapy==2.19.0",
            "34130726582b64c91531162ab277c4053e558876d49ba219cb43679e71d80a87",
            "scrapy-2.19.0/docs", tuned=False),
)


def docs_of(pin: EvalSet) -> Path:
    """The set's docs folder, from the pinned sdist (downloaded once, hash checked)."""
    folder = CACHE / pin.name
    archive_dir = CACHE / "sdists"
    archive_dir.mkdir(parents=True, exist_ok=True)
    archives = list(archive_dir.glob(pin.requirement.replace("==", "-") + ".tar.gz"))
    if not archives:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "-q", "-d", str(archive_dir), pin.requirement], check=True,
                       timeout=300)
        archives = list(archive_dir.glob(pin.requirement.replace("==", "-") + ".tar.gz"))
    [archive] = archives
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != pin.sha256:
        raise SystemExit(f"{archive.name}: sha256 {digest} is not the pinned {pin.sha256}")
    if not (folder / pin.docs).is_dir():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(pin.docs + "/")]
            tar.extractall(folder, members=members, filter="data")
    return folder / pin.docs


async def eval_set(pin: EvalSet, semantic: bool, runs: int) -> dict[str, Any]:
    docs, questions = docs_of(pin), load_questions(ROOT / "evals" / pin.name / "questions.jsonl")
    reports: list[Report] = []
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "kb.db")
        try:
            knowledge = Knowledge(store.sqlite, Embedder.load if semantic else None)
            await knowledge.index_folder(docs)
            for _ in range(runs):
                reports.append(await evaluate(knowledge, questions))
        finally:
            await store.close()
    figures = asdict(reports[0])
    for side in ("ours", "baseline"):  # quality is the same every run; latency is not
        for name in ("latency_p50_ms", "latency_p95_ms"):
            figures[side][name] = round(median([asdict(r)[side][name] for r in reports]), 2)
    figures["tuned_on_this_set"] = pin.tuned
    figures["gain"] = {
        "hit@5": round(figures["ours"]["hit"][5] - figures["baseline"]["hit"][5], 3),
        "section_hit@5": round(figures["ours"]["section_hit"][5]
                               - figures["baseline"]["section_hit"][5], 3),
        "mrr": round(figures["ours"]["mrr"] - figures["baseline"]["mrr"], 3),
    }
    return figures


WORDS = ("account billing invoice export report webhook token session cache proxy install "
         "upgrade config setting dashboard widget channel thread message user admin role "
         "permission retry limit quota backup restore schedule email notify alert metric "
         "query filter sort page search index deploy build release version plugin theme").split()


def vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    """Docs-like words: the product terms above, then made-up words, drawn by Zipf's law
    (a few words are everywhere, most are rare), as in real docs."""
    made_up = {"".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou")
                       for _ in range(rng.randint(2, 4))) for _ in range(size)}
    return WORDS + sorted(made_up)


def generated_docs(folder: Path, files: int, seed: int = 7) -> list[str]:
    """`files` Markdown files of five sections each, prose and a code block, seeded; returns
    the vocabulary, from which the benchmark's questions are drawn."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]

    def prose(count: int) -> str:
        return " ".join(rng.choices(words, weights, k=count))

    for number in range(files):
        lines = [f"# Topic {number} {prose(2)}"]
        for section in range(5):
            lines.append(f"\n## {prose(3).title()} {section}\n")
            lines.append(prose(120) + ".")
            if section == 2:
                lines.append("\n```bash\n# a comment, not a heading\nacme run --fast\n```")
        path = folder / f"area{number % 20}" / f"page{number}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
    return words


async def scale(runs: int, semantic: bool) -> dict[str, float]:
    index_s: list[float] = []
    p50: list[float] = []
    p95: list[float] = []
    passages = 0
    rng = random.Random(11)
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            docs = Path(folder) / "docs"
            words = generated_docs(docs, 1000)
            # Questions name a product term or two and a few other words of the docs.
            queries = [" ".join(rng.sample(WORDS, 2) + rng.sample(words[:800], 4))
                       for _ in range(200)]
            store = await Store.open(Path(folder) / "kb.db")
            try:
                knowledge = Knowledge(store.sqlite, Embedder.load if semantic else None)
                started = time.perf_counter()
                report = await knowledge.index_folder(docs)
                index_s.append(time.perf_counter() - started)
                passages = report.passages
                timings = []
                for query in queries:
                    started = time.perf_counter()
                    await knowledge.rank(query)
                    timings.append(time.perf_counter() - started)
                p50.append(percentile(timings, 50) * 1000)
                p95.append(percentile(timings, 95) * 1000)
            finally:
                await store.close()
    return {"files": 1000, "passages": passages, "index_s": round(median(index_s), 2),
            "search_p50_ms": round(median(p50), 2), "search_p95_ms": round(median(p95), 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", choices=[pin.name for pin in SETS],
                        help="only this set (a quick look: no scale run, no results file)")
    args = parser.parse_args()
    results: dict[str, Any] = {"sets": {}, "scale": {}}
    for semantic in (False, True):
        mode = "bm25+semantic" if semantic else "bm25"
        for pin in SETS:
            if args.set and pin.name != args.set:
                continue
            figures = await eval_set(pin, semantic, args.runs)
            results["sets"].setdefault(pin.name, {})[mode] = figures
            ours, base = figures["ours"], figures["baseline"]
            print(f"{pin.name:10} {mode:14} hit@1 {ours['hit'][1]:.2f} (base "
                  f"{base['hit'][1]:.2f})  hit@5 {ours['hit'][5]:.2f} ({base['hit'][5]:.2f})  "
                  f"section hit@5 {ours['section_hit'][5]:.2f} ({base['section_hit'][5]:.2f})  "
                  f"MRR {ours['mrr']:.2f} ({base['mrr']:.2f})  p50 {ours['latency_p50_ms']} ms"
                  f"  gate P/R {figures['gate_precision']:.2f}/{figures['gate_recall']:.2f}",
                  flush=True)
        if args.set:
            continue
        results["scale"][mode] = await scale(args.runs, semantic)
        print(f"scale      {mode:14} {results['scale'][mode]}", flush=True)
    if not args.set:
        print(f"wrote {write_result('kb_eval', results)}")


if __name__ == "__main__":
    asyncio.run(main())
