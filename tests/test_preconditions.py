"""R3's precondition gate: the measures on scripted episodes whose answers are known, and the gate in a run
(measured before training, kept, "not measured" without a validation split, and a stop that trains nothing)."""

import itertools
import json

import pytest
from fakes import ScriptedGenerator

from r3kit.core.episodes import EpisodeConfig
from r3kit.core.trainer import TrainConfig
from r3kit.eval.preconditions import PreconditionsConfig, describe, measure
from r3kit.infra.errors import UserError
from r3kit.runs.pipeline import preconditions_stage, student_stage, train_stage
from r3kit.runs.profiles import resolve
from r3kit.tasks import get_task

TASK = get_task("countdown", style="compact")
# solved at first; reflections alternate good/bad; always good; always bad
PROBLEMS = [{"target": 6, "nums": [1, 2, 3]}, {"target": 9, "nums": [4, 5]}, {"target": 24, "nums": [3, 4, 2]},
            {"target": 10, "nums": [5, 4, 1]}]
SOLUTIONS = ["1+2+3", "4+5", "3*4*2", "5+4+1"]
REFLECTIONS = [None, itertools.cycle(["good: 4+5=9", "bad: 4+5=8"]), itertools.repeat("good: 3*4=12"),
               itertools.repeat("bad: 5+4=10")]


def script(conversation):
    which = next(i for i, p in enumerate(PROBLEMS) if conversation[0]["content"] == TASK.first_messages(p)[0]["content"])
    right = f"<answer>{SOLUTIONS[which]}</answer>"
    if len(conversation) == 1:  # first attempts: the first problem solved, its steps right; the others wrong
        return "1+2=3,3+3=6 so " + right if which == 0 else "1+1=3 so <answer>1</answer>"
    last = conversation[-1]["content"]
    if last == TASK.prompts.reflection_request:
        return next(REFLECTIONS[which])
    if last == TASK.prompts.retry_without_reflection:
        return "<answer>1</answer>"
    if conversation[-2]["content"] == TASK.prompts.generic_reflection:  # the generic reflection helps problem 2 only
        return right if which == 2 else "<answer>1</answer>"
    return right if conversation[-2]["content"].startswith("good") else "<answer>1</answer>"


class Recording(ScriptedGenerator):
    """Also records each call's (conversations, temperature, token limit)."""

    def generate(self, conversations, sampling, progress=None):
        self.samplings = [*getattr(self, "samplings", []), (len(conversations), sampling.temperature,
                                                            sampling.max_new_tokens)]
        return super().generate(conversations, sampling, progress)


def test_the_gate_measures_own_against_the_controls_and_the_groups_with_signal(tiny):
    generator = Recording(tiny[1], script)
    train = TrainConfig(group_size=4, problems_per_step=1, micro_batch_size=4, reflection_tokens=16, retry_tokens=16,
                        temperature=1.0, report_to="none")
    record, transcripts = measure(generator, TASK, PROBLEMS, EpisodeConfig(32, 16, 16), train, PreconditionsConfig())
    assert record["failures"] == 3 and record["group_size"] == 4 and len(transcripts) == 3
    assert [sum(g["ok"] for g in t["group"]) for t in transcripts] == [2, 4, 0]
    assert record["rescue_rate"] == pytest.approx(0.5)
    assert record["retry_success"]["no_reflection"]["successes"] == 0
    assert record["retry_success"]["generic_reflection"]["successes"] == 1
    read = record["reflections_read"]  # 12 reflections: "good" ones write a right value, "bad" ones a wrong one
    assert read["values_right"]["successes"] == 6 and read["values_right"]["n"] == 12
    assert read["names_the_fault"]["successes"] == 0 and read["conclusion_verifies"]["successes"] == 0
    assert any(line.startswith("  reflections: 50% have every written value right") for line in describe(record))
    assert record["own_vs_no_reflection"]["difference"] == pytest.approx(0.5)
    assert record["own_vs_generic_reflection"]["difference"] == pytest.approx(0.5 - 1 / 3)
    assert record["groups_with_signal"]["measured"] == pytest.approx(1 / 3)
    assert record["groups_with_signal"]["if_uniform"] == pytest.approx(1 - 2 * 0.5 ** 4)
    assert record["arithmetic"]["first_attempts"]["successes"] == 2 and record["arithmetic"]["first_attempts"]["n"] == 5
    assert record["arithmetic"]["reflections"]["n"] == 12 and record["arithmetic"]["reflections"]["successes"] == 6
    assert record["checks"] == {"own_vs_no_reflection": True, "own_vs_generic_reflection": True,
                                "groups_with_signal": False}
    assert record["passed"] is False and record["failed"] == [">= 50% of GRPO groups carry signal"]
    text = "\n".join(describe(record))
    assert "own - no reflection: +50.0 points" in text and "GRPO groups with signal: 33%" in text
    assert "gate FAILED (>= 50% of GRPO groups carry signal)" in text and "not whether R3 teaches reflection" in text
    # first attempts and controls as evaluation decodes them; G reflections sampled and greedy retries, as training
    assert generator.samplings == [(4, 0.0, 32), (3, 0.0, 16), (3, 0.0, 16), (12, 1.0, 16), (12, 0.0, 16)]
    record, _ = measure(generator, TASK, PROBLEMS, EpisodeConfig(32, 16, 16), train,
                        PreconditionsConfig(min_signal=0.3))
    assert record["passed"] is True and "the gate passed" in describe(record)[-1]


def test_gate_settings_fail_with_the_field_named():
    with pytest.raises(ValueError, match="preconditions.on_fail must be one of"):
        resolve("smoke", overrides={"preconditions": {"on_fail": "halt"}})
    with pytest.raises(ValueError, match="min_signal in"):
        resolve("smoke", overrides={"preconditions": {"min_signal": 2}})
    with pytest.raises(ValueError, match="gates training on the validation split, but data.n_validation is 0"):
        resolve("smoke", overrides={"preconditions": {"on_fail": "stop"}})
    assert resolve("smoke", overrides={"preconditions": None}).preconditions is None
    assert resolve("smoke").preconditions == PreconditionsConfig()


def test_a_run_measures_the_gate_before_training_and_a_stop_trains_nothing(tmp_path, capsys):
    gate = {"on_fail": "stop", "min_gain": 0.5, "min_signal": 1.0}  # out of the tiny random student's reach
    run = resolve("smoke", tmp_path / "gated", overrides={"data": {"n_validation": 4}, "preconditions": gate})
    student_stage(run)
    record = preconditions_stage(run)
    assert record["measured"] and record["problems"] == 4 and record["split"] == "validation"
    written = (tmp_path / "gated" / "preconditions.json").read_text()
    assert record["passed"] is False
    with pytest.raises(UserError, match="R3's preconditions failed .* no training"):
        train_stage(run, "r3")
    assert not (tmp_path / "gated" / "train").exists()
    assert "R3's preconditions, on" in capsys.readouterr().out
    assert (tmp_path / "gated" / "preconditions.json").read_text() == written  # kept, not measured again
    assert json.loads(written)["identity"]["settings"]["on_fail"] == "stop"

    from r3kit.cli import main

    assert main(["run", "preconditions", "--profile", "smoke", "--out", str(tmp_path / "gated"), "--set",
                 "data.n_validation=4", "--set", 'preconditions={"on_fail": "stop", "min_gain": 0.5, "min_signal": 1.0}']) == 0
    assert "gate FAILED" in capsys.readouterr().out  # `r3kit run preconditions` shows the kept record
    assert (tmp_path / "gated" / "preconditions.json").read_text() == written

    plain = resolve("smoke", tmp_path / "plain")
    record = preconditions_stage(plain)
    assert record["measured"] is False and "no validation split" in record["reason"]
    assert describe(record) == ["R3's preconditions: not measured (this run has no validation split "
                                "(data.n_validation = 0))."]
