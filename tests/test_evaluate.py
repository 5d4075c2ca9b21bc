"""Metric arithmetic on hand-built transcripts (with intervals), and the files evaluation writes."""

import json
import math

import pytest
from fakes import ScriptedGenerator

from r3kit.eval.evaluate import (
    EvalConfig,
    copied,
    evaluate,
    frozen_retrier,
    on_fixed_failures,
    oracle_reflection,
    own_failures,
    paired_with,
    summarize,
    swapped_reflection,
)
from r3kit.eval.stats import proportion
from r3kit.infra.io import read_jsonl
from r3kit.tasks import get_task


def row(first_ok, reflection_ok=None, no_reflection_ok=None, generic_ok=None, difficulty="3 numbers", tokens=5):
    second = {}
    for name, ok in (("reflection", reflection_ok), ("no_reflection", no_reflection_ok), ("generic_reflection", generic_ok)):
        if ok is not None:
            second[name] = {"verdict": {"ok": ok, "reason": ""}, "reflection_tokens": tokens if name == "reflection" else 0}
    return {"difficulty": difficulty, "first": {"verdict": {"ok": first_ok, "reason": ""}}, "second": second}


def test_summary_counts_first_try_successes_in_every_second_try_condition():
    transcripts = ([row(True)] * 3 + [row(False, True, False, True)] * 2 + [row(False, False, True, False, tokens=9)] * 5
                   + [row(False, False, False, False, difficulty="4 numbers")] * 2)
    metrics = summarize(transcripts)
    assert metrics["first_try"]["successes"] == 3 and metrics["first_try"]["n"] == 12
    assert metrics["second_try"]["successes"] == 5
    assert metrics["retry_no_reflection"]["successes"] == 8
    assert metrics["retry_generic_reflection"]["successes"] == 5
    assert math.isclose(metrics["second_try"]["accuracy"], 5 / 12)
    assert metrics["second_try"] == proportion(5, 12)
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
    read = written["reflections_read"]  # the 2 reflections on failed attempts write no value, name no fault
    assert read["values_right"] is None and read["names_the_fault"] == read["conclusion_verifies"] == proportion(0, 2)


def test_bad_evaluation_parameters_fail_before_generation(tiny):
    task = get_task("countdown", style="compact")
    never = ScriptedGenerator(tiny[1], lambda c: "", fail_after=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate(None, None, task, [], EvalConfig(), generator=never)
    with pytest.raises(ValueError, match="unknown condition"):
        evaluate(None, None, task, [{"target": 1, "nums": [1]}], EvalConfig(conditions=("nope",)), generator=never)
    with pytest.raises(ValueError, match="n_examples"):
        evaluate(None, None, task, [{"target": 1, "nums": [1]}], EvalConfig(n_examples=0), generator=never)


def test_fixed_failures_replay_the_baselines_failed_attempts_and_pair_the_verdicts(tiny, tmp_path):
    task = get_task("countdown", style="compact")
    problems = [{"target": 6, "nums": [1, 2, 3]}, {"target": 24, "nums": [3, 4, 2]}, {"target": 1, "nums": [5, 4, 9]},
                {"target": 7, "nums": [1, 2, 5]}]
    firsts = iter(["<answer>1+2+3</answer>", "<answer>3+4+2</answer>", "<answer>9-4-4</answer>", "<answer>1*2*5</answer>"])

    def vanilla_script(c):  # first attempts as listed; the vanilla retry fixes only 24 = 3*4*2
        return next(firsts) if len(c) == 1 else "<answer>3*4*2</answer>" if c[-1]["content"] == "retry" else "r"

    baseline = evaluate(None, None, task, problems, EvalConfig(conditions=("reflection",)), tmp_path / "vanilla",
                        generator=ScriptedGenerator(tiny[1], vanilla_script)).transcripts
    solutions = {"1": "<answer>(9-5)/4</answer>", "7": "<answer>2*1+5</answer>"}

    def trained_script(c):  # reflects on the attempt it is shown; its retry solves 1 and 7 but not 24
        assert c[0]["content"].startswith(("1 2 3", "3 4 2", "5 4 9", "1 2 5"))
        if c[-1]["content"] != "retry":
            return "check " + c[1]["content"]
        target = c[0]["content"].split("= ")[-1]
        return solutions[target] if target != "24" else "<answer>3+4+2</answer>"

    trained = ScriptedGenerator(tiny[1], trained_script)
    metrics, transcripts = on_fixed_failures(trained, task, baseline, EvalConfig())
    assert [t["index"] for t in transcripts] == [1, 2, 3]  # only the failed first attempts, in order
    for t, row in zip(transcripts, [r for r in baseline if not r["first"]["verdict"]["ok"]]):
        assert t["first"] == row["first"]  # the baseline's attempt, not a new one
        assert t["second"]["reflection"]["messages"][1]["content"] == "check " + row["first"]["messages"][-1]["content"]
    assert all(len(call) == 3 for call in trained.calls) and len(trained.calls) == 2  # no first attempts generated
    assert metrics["baseline"]["successes"] == 1 and metrics["model"]["successes"] == 2 and metrics["model"]["n"] == 3
    assert metrics["paired"]["gained"] == 2 and metrics["paired"]["lost"] == 1
    assert "both_failed_first" not in metrics
    # the restricted analysis keeps the problems the trained model also fails at first: say it solves 5 4 9 at once now
    own = [{"index": i, "first": {"verdict": {"ok": i in (0, 2)}}} for i in range(4)]
    metrics, _ = on_fixed_failures(ScriptedGenerator(tiny[1], trained_script), task, baseline, EvalConfig(), own=own)
    both = metrics["both_failed_first"]
    assert both["model"]["n"] == 2 and both["model"]["successes"] == 1 and both["baseline"]["successes"] == 1
    assert (both["paired"]["gained"], both["paired"]["lost"]) == (1, 1)
    with pytest.raises(ValueError, match="no failed first attempt"):
        on_fixed_failures(trained, task, [r for r in baseline if r["first"]["verdict"]["ok"]], EvalConfig())


def test_paired_with_matches_problems_by_index_and_counts_changed_attempts():
    def episode(index, attempt, first_ok, reflection_ok=None):
        r = row(first_ok, reflection_ok)
        r["index"] = index
        r["first"]["messages"] = [{"role": "user", "content": "p"}, {"role": "assistant", "content": attempt}]
        return r

    vanilla = [episode(0, "a", True), episode(1, "b", False, False), episode(2, "c", False, True), episode(3, "d", False, False)]
    # listed in another order: pairing goes by index
    trained = [episode(3, "d", False, True), episode(2, "x", True), episode(1, "y", False, False), episode(0, "a", True)]
    pair = paired_with(vanilla, trained)
    assert pair["n"] == 4 and pair["changed_first_attempts"] == 2
    assert (pair["first_try"]["gained"], pair["first_try"]["lost"]) == (1, 0)   # problem 2 solved at once now
    assert (pair["second_try"]["gained"], pair["second_try"]["lost"]) == (1, 0)  # problem 3 rescued by the retry
    with pytest.raises(ValueError, match="same problems"):
        paired_with(vanilla, trained[:3])


def test_own_failures_pair_the_reflection_with_each_control_on_the_same_failed_attempts():
    transcripts = ([row(True)] * 4 + [row(False, True, False, False)] * 6 + [row(False, False, True, False)] * 1
                   + [row(False, True, True, True)] * 3 + [row(False, False, False, False)] * 2)
    own = own_failures(transcripts, ("reflection", "no_reflection", "generic_reflection"))
    assert own["reflection"] == proportion(9, 12) and own["no_reflection"] == proportion(4, 12)
    assert own["generic_reflection"] == proportion(3, 12)
    vs_none = own["reflection_vs_no_reflection"]
    assert (vs_none["gained"], vs_none["lost"]) == (6, 1)
    assert vs_none["p_value"] == pytest.approx(2 * sum(math.comb(7, k) for k in range(6, 8)) / 2**7)  # two-sided
    assert own_failures(transcripts, ("no_reflection",)) is None  # nothing to pair the reflection with
    assert own_failures([row(True)] * 3, ("reflection",)) is None


def test_copy_rate_counts_retries_whose_answer_stands_in_the_reflection():
    task = get_task("countdown", style="compact")

    def episode(reflection, retry, attempt="<answer>1+2</answer>"):
        return {"first": {"messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": attempt}]},
                "second": {"reflection": {"messages": [{"role": "user", "content": "wrong. reflect"},
                                                       {"role": "assistant", "content": reflection},
                                                       {"role": "user", "content": "retry"},
                                                       {"role": "assistant", "content": retry}]}}}

    rows = [episode("49-37=12,12*5=60 so (49-37)*5", "<answer>(49-37) * 5</answer>"),  # copied (spaces aside)
            episode("49-37=12,12*5=60 so (49-37)*5", "<answer>(49+37)-5</answer>"),  # a new answer
            episode("think", "no tag at all"),  # no answer: not counted
            # the reflection quotes the failed attempt to check it; repeating that attempt is not copying
            episode("(49+37)-5=81 not 60. 49-37=12 so (49-37)*5", "<answer>(49+37)-5</answer>", "<answer>(49+37)-5</answer>"),
            {"first": {}, "second": {}}]  # solved at first: no reflection
    assert copied(task, rows) == proportion(1, 3)
    assert copied(get_task("function_calling"), rows) is None  # a task without `answer` has no copy measure


def test_the_frozen_retrier_takes_the_reflection_from_one_model_and_the_retry_from_another(tiny):
    """A trained model whose reflections are right but whose own retries are wrong: on vanilla's failed attempts
    its retry fails (on_fixed_failures), while vanilla retrying after its reflection passes (frozen retrier)."""
    task = get_task("countdown", style="compact")
    problems = [{"target": 6, "nums": [1, 2, 3]}, {"target": 9, "nums": [4, 5]}, {"target": 2, "nums": [1, 1]}]
    solutions = {"1 2 3 = 6": "1+2+3", "4 5 = 9": "4+5", "1 1 = 2": "1+1"}

    def vanilla(c):  # fails first; reflects vaguely; its retry copies a reflection's "use X", else guesses 1
        if len(c) == 1:
            return "<answer>1+1</answer>" if c[0]["content"] == "1 1 = 2" else "<answer>1</answer>"
        if c[-1]["content"] == task.prompts.reflection_request:
            return "think harder"
        reflection = c[-2]["content"]
        return f"<answer>{reflection[4:]}</answer>" if reflection.startswith("use ") else "<answer>1</answer>"

    def trained(c):  # reflects with the solution, retries badly
        if c[-1]["content"] == task.prompts.reflection_request:
            return f"use {solutions[c[0]['content']]}"
        return "<answer>1</answer>"

    baseline = evaluate(None, None, task, problems, EvalConfig(), generator=ScriptedGenerator(tiny[1], vanilla)).transcripts
    assert [row["first"]["verdict"]["ok"] for row in baseline] == [False, False, True]
    fixed, reflected = on_fixed_failures(ScriptedGenerator(tiny[1], trained), task, baseline, EvalConfig())
    frozen, rows = frozen_retrier(ScriptedGenerator(tiny[1], vanilla), task, baseline, reflected, EvalConfig())
    assert frozen["baseline"]["successes"] == 0 and frozen["model"]["successes"] == 2 and frozen["model"]["n"] == 2
    assert frozen["paired"]["gained"] == 2 and frozen["paired"]["lost"] == 0
    assert [r["second"]["reflection"]["messages"][1]["content"] for r in rows] == ["use 1+2+3", "use 4+5"]
    assert fixed["model"]["successes"] == 0  # the same reflections, the trained model's own retry


def test_a_swapped_reflection_bounds_what_a_reflection_carries(tiny):
    """Reflections that name their problem's solution rescue every failure; the same reflections moved to
    another problem rescue none."""
    task = get_task("countdown", style="compact")
    problems = [{"target": 6, "nums": [1, 2, 3]}, {"target": 9, "nums": [4, 5]}, {"target": 2, "nums": [1, 1]}]
    solutions = {"1 2 3 = 6": "1+2+3", "4 5 = 9": "4+5", "1 1 = 2": "1+1"}

    def model(c):
        if len(c) == 1:
            return "<answer>1</answer>"
        if c[-1]["content"] == task.prompts.reflection_request:
            return f"use {solutions[c[0]['content']]}"
        reflection = c[-2]["content"]
        return f"<answer>{reflection[4:]}</answer>" if reflection.startswith("use ") else "<answer>1</answer>"

    generator = ScriptedGenerator(tiny[1], model)
    transcripts = evaluate(None, None, task, problems, EvalConfig(), generator=generator).transcripts
    bound, rows = swapped_reflection(generator, task, transcripts, EvalConfig())
    assert bound["own"]["successes"] == 3 and bound["swapped"]["successes"] == 0 and bound["swapped"]["n"] == 3
    assert bound["own_vs_swapped"]["gained"] == 3 and [r["reflection"] for r in rows] == ["use 4+5", "use 1+1", "use 1+2+3"]
    assert swapped_reflection(generator, task, transcripts[:1], EvalConfig()) == (None, [])


def test_the_oracle_reflection_bounds_what_a_better_reflection_could_give(tiny):
    """A model whose own reflections say nothing but whose retry copies a reflection's conclusion: the solver's
    reflections name each attempt's fault and rescue every failure the solver can solve; an unsolvable one is left out."""
    task = get_task("countdown", style="compact")
    problems = [{"target": 6, "nums": [1, 2, 3]}, {"target": 20, "nums": [4, 5]}, {"target": 7, "nums": [1, 1]}]

    def model(c):
        if len(c) == 1:
            return "1+1=3 so <answer>1+1</answer>"
        if c[-1]["content"] == task.prompts.reflection_request:
            return "no idea"
        reflection = c[-2]["content"]
        return f"<answer>{reflection.rsplit(' so ', 1)[1]}</answer>" if " so " in reflection else "<answer>1</answer>"

    generator = ScriptedGenerator(tiny[1], model)
    transcripts = evaluate(None, None, task, problems, EvalConfig(), generator=generator).transcripts
    bound, rows = oracle_reflection(generator, task, transcripts, EvalConfig())
    assert bound["own"]["successes"] == 0 and bound["oracle"]["successes"] == 2 and bound["oracle"]["n"] == 2
    assert bound["own_vs_oracle"]["lost"] == 2 and [r["index"] for r in rows] == [0, 1]
    assert rows[1]["reflection"] == "1 not given, 4 unused, 5 unused. 4*5=20 so 4*5"
    assert rows[0]["reflection"].startswith("1 twice, 2 unused, 3 unused. ")
    assert oracle_reflection(generator, get_task("function_calling"), transcripts, EvalConfig()) == (None, [])
