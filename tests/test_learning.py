"""The kit's guard against an RL bug that trains but does not learn.

A cpu-demo without the control run and the retry controls, with a somewhat stronger student (640 SFT
steps), mining on 8000 problems and 100 GRPO steps of 16 problems (about 17 minutes on 2 cores), and
then paired tests on 3000 held-out problems the student never trained on. The checkpoint (step 50 or
100) is chosen on a separate validation split of 500 problems, which the student never trained on
either; the test split only scores the chosen weights.

What it asserts is what R3's objective trains directly: the vanilla student's failed first attempts
each get a reflection and a retry from the vanilla student and from the R3-trained one, and the
trained retries must pass more often, by an exact two-sided McNemar test, p < 0.01. Every run of this
kind so far has shown it (on 1000 problems: one-sided p 6e-21 and 0.007 in earlier runs, two-sided
0.045 in cpu-demo at the commit that made this change; here there are 3000).
It no longer asserts that whole-episode second-try accuracy rises: the multi-seed study
(results/cpu-study) and cpu-demo at the same commit show that this moves either way with the seed at
this scale (cpu-demo: 20.3% -> 17.7%), so it is a finding to report, not an invariant of the code.
"""

import json

import pytest

from r3kit.runs.pipeline import evaluate_stage, mine_stage, student_stage, train_stage
from r3kit.runs.profiles import resolve


@pytest.mark.slow
def test_r3_training_raises_retry_success_on_held_out_problems(tmp_path):
    run = resolve("cpu-demo", tmp_path, overrides={
        "student": {"steps": 640}, "data": {"n_test": 3000, "n_validation": 500, "n_train": 8000},
        "evaluate": {"conditions": ["reflection"], "n_examples": None},
        "train": {"steps": 100, "problems_per_step": 16, "micro_batch_size": 128, "generation_batch_size": 128,
                  "save_steps": 50}, "select": {"metric": "second_try"}})
    student_stage(run)
    mine_stage(run)
    summary = train_stage(run, "r3")
    assert summary["steps"] == run.train.steps

    evaluate_stage(run, "vanilla")
    trained = evaluate_stage(run, "trained")
    selection = json.loads((tmp_path / "train" / "r3" / "selection.json").read_text())
    print(f"chosen on validation: {selection}")
    assert selection["split"] == "validation" and sorted(map(int, selection["scores"])) == [50, 100]
    assert trained["checkpoint"]["step"] == selection["selected"]
    fixed = trained["on_vanilla_failures"]  # the same failed attempts, paired
    print(f"retry success on {fixed['model']['n']} held-out failures: vanilla {fixed['baseline']['accuracy']:.3f}, "
          f"trained {fixed['model']['accuracy']:.3f}; {fixed['paired']}")
    assert fixed["model"]["n"] > 1000
    assert fixed["paired"]["gained"] > fixed["paired"]["lost"] and fixed["paired"]["p_value"] < 0.01
    print(f"second try, problem by problem (reported, not asserted): {trained['paired_vs_vanilla']['second_try']}")
