"""The kit's guard against an RL bug that trains but does not learn.

A reduced cpu-demo (the student, greedy failure mining on 4000 problems, R3 training; no control run)
and then a paired test on 3000 held-out problems the student never trained on (about 2000 of them fail
at first, enough to see a gain of a few points): the vanilla student's failed first attempts
each get a reflection and a retry from the vanilla student and from the R3-trained one, and the trained
retries must pass significantly more often (exact one-sided McNemar test, p < 0.01).
"""

import copy

import pytest

from r3kit.data import load_split
from r3kit.evaluate import mcnemar
from r3kit.generation import make_generator
from r3kit.models import load_model
from r3kit.pipeline import mine_stage, student_stage, train_stage, trained_weights
from r3kit.profiles import resolve
from r3kit.rollout import first_attempts, second_turns


@pytest.mark.slow
def test_r3_training_raises_retry_success_on_held_out_problems(tmp_path):
    run = resolve("cpu-demo", tmp_path, overrides={"data": {"n_test": 3000, "n_train": 4000}})
    student_stage(run)
    mine_stage(run)
    summary = train_stage(run, "r3")
    assert summary["steps"] == run.train.steps

    task, cfg = run.get_task(), run.evaluate.episode()
    problems = [dict(r) for r in load_split(run.data, "test")]
    vanilla = make_generator(*load_model(run.model), batch_size=250)
    name, adapter = trained_weights(run, "r3")
    trained = make_generator(*load_model(type(run.model)(**{**run.model.__dict__, "name": name}), adapter=adapter), batch_size=250)

    failed = [e for e in first_attempts(vanilla, task, problems, cfg, progress=False) if not e.first.ok]
    assert len(failed) > 1000
    before = [e.second["reflection"].verdict.ok for e in second_turns(vanilla, task, copy.deepcopy(failed), cfg, progress=False)]
    after = [e.second["reflection"].verdict.ok for e in second_turns(trained, task, copy.deepcopy(failed), cfg, progress=False)]
    result = mcnemar(before, after)
    print(f"retry success on {len(failed)} held-out failures: vanilla {sum(before) / len(failed):.3f}, "
          f"trained {sum(after) / len(failed):.3f}; {result}")
    assert result["gained"] > result["lost"] and result["p_value"] < 0.01
