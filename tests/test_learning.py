"""The kit's guard against an RL bug that trains but does not learn.

A reduced cpu-demo (the student, greedy failure mining, R3 training; no control run, no retry controls)
and then paired tests on 3000 held-out problems the student never trained on (most of them fail at
first, enough to see a gain of a few points):
  * the vanilla student's failed first attempts each get a reflection and a retry from the vanilla
    student and from the R3-trained one, and the trained retries must pass significantly more often;
  * problem by problem, the trained student's second try (its own attempt, reflection and retry) must
    succeed significantly more often than the vanilla student's.
Both by an exact one-sided McNemar test, p < 0.01.
"""

import pytest

from r3kit.pipeline import evaluate_stage, mine_stage, student_stage, train_stage
from r3kit.profiles import resolve


@pytest.mark.slow
def test_r3_training_raises_retry_success_on_held_out_problems(tmp_path):
    run = resolve("cpu-demo", tmp_path, overrides={"data": {"n_test": 3000, "n_train": 4000},
                                                       "evaluate": {"conditions": ["reflection"]}})
    student_stage(run)
    mine_stage(run)
    summary = train_stage(run, "r3")
    assert summary["steps"] == run.train.steps

    evaluate_stage(run, "vanilla")
    trained = evaluate_stage(run, "trained")
    fixed = trained["on_vanilla_failures"]  # the same failed attempts, paired
    print(f"retry success on {fixed['model']['n']} held-out failures: vanilla {fixed['baseline']['accuracy']:.3f}, "
          f"trained {fixed['model']['accuracy']:.3f}; {fixed['paired']}")
    assert fixed["model"]["n"] > 1000
    assert fixed["paired"]["gained"] > fixed["paired"]["lost"] and fixed["paired"]["p_value"] < 0.01
    second = trained["paired_vs_vanilla"]["second_try"]
    print(f"second try, problem by problem: {second}")
    assert second["gained"] > second["lost"] and second["p_value"] < 0.01
