"""`supportbot eval answers` end to end: the questions go through retrieval, the bot's
prompt and the model as one Message Batch on the local fake, and come back judged."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.processes import bot_env
from tests.e2e.test_bad_input import run
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply

DATA = Path(__file__).resolve().parent.parent / "data"
QUESTIONS: list[dict[str, object]] = [
    {"question": "How can I get my dashboard as a PDF file?", "expected": ["guide/exports.md"],
     "key_phrases": ["Export", "PDF", "carrier pigeon"]},
    {"question": "What is the fastest a widget can refresh?", "expected": ["guide/widgets.rst"]},
    {"question": "Can scheduled exports be revoked like a shared link?", "expected": [],
     "answerable": False},
    {"question": "What is the price of the enterprise plan per seat?", "expected": [],
     "answerable": False},
    {"question": "My dashboard export to PDF fails every time; can a person help with the export?",
     "expected": ["guide/exports.md"]},
    {"question": "How do I share a dashboard export link with a colleague?",
     "expected": ["guide/exports.md"]},
]


def script(fake: FakeAnthropic) -> None:
    fake.script(
        Reply(text="Open the dashboard, press Export and pick PDF [1].", when="as a PDF file"),
        Reply(text="[[NOT_IN_DOCS]] The docs do not say.", when="revoked"),
        Reply(text="[[HANDOFF]]", when="a person"),
        Fail(400, "invalid_request_error", "messages: too strange", when="colleague"),
    )


async def test_a_question_set_is_answered_as_one_batch_and_judged(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    async with FakeAnthropic(default_words=30) as fake:
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=fake.base_url)
        code, _, err = await run(tmp_path, env, "eval", "answers", str(questions))
        assert code == 2 and "kb add" in err  # nothing indexed yet: said, not a silent 0
        code, _, err = await run(tmp_path, env, "kb", "add", str(DATA / "docs"))
        assert code == 0, err
        script(fake)
        report_file = tmp_path / "report.json"
        code, out, err = await run(tmp_path, env, "eval", "answers", str(questions),
                                   "--json", str(report_file), "--poll", "0.05")
        assert code == 0, err
        batch_calls = len(fake.batches.batches)
        single = [r for r in fake.requests if r.path == "/v1/messages"]
    assert batch_calls == 1 and single == []  # every model call went in the one batch
    assert "ended" in err and "msgbatch_" in err  # the progress line
    report = json.loads(report_file.read_text())
    outcomes = {q["question"][:25]: q["outcome"] for q in report["questions"]}
    assert outcomes == {
        "How can I get my dashboar": "answered",
        "What is the fastest a wid": "answered",
        "Can scheduled exports be ": "dont_know",  # the model's marker
        "What is the price of the ": "dont_know",  # the gate: never sent to the model
        "My dashboard export to PD": "handed_over",
        "How do I share a dashboar": "failed",  # the scripted error came back errored
    }
    first = report["questions"][0]
    assert first["cited_expected"] is True
    assert first["phrases_found"] == ["Export", "PDF"]
    assert first["phrases_missing"] == ["carrier pigeon"]
    assert report["questions"][1]["cited_expected"] is False  # the fake's answer cites nothing
    totals = report["totals"]
    assert totals["unanswerable_declined"] == 2 and totals["failed"] == 1
    assert totals["cost_usd"] > 0 and totals["input_tokens"] > 0
    assert "batch price: half the single price" in out
    assert "answered 2, I don't know 2 (the search's gate 1), handed over 1, failed 1" in out
    assert report["questions"][3]["declined_by"] == "gate"
    assert report["questions"][2]["declined_by"] == "model"


async def test_one_by_one_costs_twice_the_batch_for_the_same_answers(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS[:2]) + "\n")
    reports = {}
    async with FakeAnthropic(default_words=30) as fake:
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=fake.base_url)
        code, _, err = await run(tmp_path, env, "kb", "add", str(DATA / "docs"))
        assert code == 0, err
        for mode in ("batch", "single"):
            fake.reset()
            out_file = tmp_path / f"{mode}.json"
            extra = ["--no-batch"] if mode == "single" else ["--poll", "0.05"]
            code, out, err = await run(tmp_path, env, "eval", "answers", str(questions),
                                       "--json", str(out_file), *extra)
            assert code == 0, err
            reports[mode] = json.loads(out_file.read_text())["totals"]
    batch, single = reports["batch"], reports["single"]
    assert batch["output_tokens"] == single["output_tokens"] > 0
    assert batch["cost_usd"] < single["cost_usd"]
    assert abs(batch["cost_usd"] * 2 - single["cost_usd"]) <= 0.1 * single["cost_usd"]


async def test_bedrock_has_no_batches_and_says_to_ask_one_by_one(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps(QUESTIONS[0]) + "\n")
    env = bot_env(tmp_path, SUPPORTBOT_PROVIDER="bedrock", AWS_REGION="us-east-1",
                  AWS_BEARER_TOKEN_BEDROCK="k")
    code, _, err = await run(tmp_path, env, "eval", "answers", str(questions))
    assert code == 2 and "--no-batch" in err and "Traceback" not in err


async def test_mistakes_are_said_before_any_model_call(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({**QUESTIONS[0], "expected": ["guide/export.md"]}) + "\n")
    async with FakeAnthropic(api_key="the-right-key") as fake:
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="a-wrong-key",
                      ANTHROPIC_BASE_URL=fake.base_url)
        code, _, err = await run(tmp_path, env, "kb", "add", str(DATA / "docs"))
        assert code == 0, err
        code, _, err = await run(tmp_path, env, "eval", "answers", str(questions), "--json",
                                 str(tmp_path / "no-such-folder" / "out.json"))
        assert code == 2 and "not a file in an existing folder" in err
        assert fake.batches.batches == {} and fake.requests == []
        code, out, err = await run(tmp_path, env, "eval", "answers", str(questions),
                                   "--no-batch")
    # A refused key stops the run (every question would fail the same way), and says so.
    assert code == 1 and "invalid x-api-key" in err and "Traceback" not in err
    assert "expected path 'guide/export.md' is not an indexed document" in err
    assert "a-wrong-key" not in out + err
