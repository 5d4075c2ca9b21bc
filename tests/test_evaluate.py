"""Metric arithmetic on hand-built transcripts (with intervals), and the files evaluation writes."""

import json
import math

import pytest
from fakes import ScriptedGenerator

from r3kit.evaluate import EvalConfig, evaluate, mcnemar, summarize, wilson
from r3kit.io import read_jsonl
from r3kit.tasks import get_task


def row(first_ok, reflection_ok=None, no_reflection_ok=None, generic_ok=None, difficulty="3 numbers", tokens=5):
    second = {}
    for name, ok in (("reflection", reflection_ok), ("no_reflection", no_reflection_ok), ("generic_reflection", generic_ok)):
        if ok is not None:
            second[name] = {"verdict": {"ok": ok, "reason": ""}, "reflection_tokens": tokens if name == "reflection" else 0}
    return {"difficulty": difficulty, "first": {"verdict": {"ok": first_ok, "reason": ""}}, "second": second}


def test_wilson_interval_matches_known_values():
    low, high = wilson(8, 10)
    assert math.isclose(low, 0.4902, abs_tol=1e-4) and math.isclose(high, 0.9433, abs_tol=1e-4)
    low, high = wilson(0, 20)
    assert low == 0.0 and math.isclose(high, 0.1611, abs_tol=1e-4)
    low, high = wilson(500, 1000)
    assert math.isclose(low, 0.4691, abs_tol=1e-4) and math.isclose(high, 0.5309, abs_tol=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_summary_counts_first_try_successes_in_every_second_try_condition():
    transcripts = ([row(True)] * 3 + [row(False, True, False, True)] * 2 + [row(False, False, True, False, tokens=9)] * 5
                   + [row(False, False, False, False, difficulty="4 numbers")] * 2)
    metrics = summarize(transcripts)
    assert metrics["first_try"]["successes"] == 3 and metrics["first_try"]["n"] == 12
    assert metrics["second_try"]["successes"] == 5
    assert metrics["retry_no_reflection"]["successes"] == 8
    assert metrics["retry_generic_reflection"]["successes"] == 5
    assert math.isclose(metrics["second_try"]["accuracy"], 5 / 12)
    assert (metrics["second_try"]["ci_low"], metrics["second_try"]["ci_high"]) == pytest.approx(wilson(5, 12))
    assert metrics["by_difficulty"]["4 numbers"]["second_try"]["successes"] == 0
    assert metrics["by_difficulty"]["3 numbers"]["first_try"]["n"] == 10
    assert metrics["reflection_tokens_mean"] == pytest.approx((2 * 5 + 5 * 9 + 2 * 5) / 9)
    assert metrics["failed_first_attempts"] == 9
    with pytest.raises(ValueError, match="no transcripts"):
        summarize([])


def test_evaluate_writes_metrics_that_agree_with_its_transcripts(tiny, tmp_path):
    task = get_task("countdown", style="compact")
    problems = [{"target": 6, "nums": [1, 2, 3]}, {"target": 24, "nums": [3, 4, 2]}, {"target": 1, "nums": [5, 4, 9]}]
    answers = iter(["<answer>1+2+3</answer>", "<answer>3+4+2</answer>", "<answer>9-4-5</answer>"])
    generator = ScriptedGenerator(tiny[1], lambda c: next(answers) if len(c) == 1 else "<answer>3*4*2</answer>")
    result = evaluate(None, None, task, problems, EvalConfig(), tmp_path, label="scripted", generator=generator)
    written = json.loads((tmp_path / "metrics.json").read_text())
    transcripts = read_jsonl(tmp_path / "transcripts.jsonl")
    assert len(transcripts) == 3
    recomputed = summarize(transcripts)
    for key in ("first_try", "second_try", "retry_no_reflection", "retry_generic_reflection"):
        assert written[key] == recomputed[key] == result.metrics[key]
    assert written["first_try"]["successes"] == 1 and written["second_try"]["successes"] == 2
    assert written["label"] == "scripted" and written["generation"]["tokens"] > 0


def test_bad_evaluation_parameters_fail_before_generation(tiny):
    task = get_task("countdown", style="compact")
    never = ScriptedGenerator(tiny[1], lambda c: "", fail_after=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate(None, None, task, [], EvalConfig(), generator=never)
    with pytest.raises(ValueError, match="unknown condition"):
        evaluate(None, None, task, [{"target": 1, "nums": [1]}], EvalConfig(conditions=("nope",)), generator=never)
    with pytest.raises(ValueError, match="n_examples"):
        evaluate(None, None, task, [{"target": 1, "nums": [1]}], EvalConfig(n_examples=0), generator=never)


def test_mcnemar_exact_one_sided():
    before = [False] * 10 + [True] * 5
    after = [True] * 8 + [False] * 2 + [True] * 4 + [False]
    result = mcnemar(before, after)
    assert result["gained"] == 8 and result["lost"] == 1
    assert result["p_value"] == pytest.approx((math.comb(9, 8) + math.comb(9, 9)) / 2**9)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar([True], [])
