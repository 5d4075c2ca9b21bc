"""Figures are drawn from saved files only: a hand-made run folder gives the table and every PNG."""

import csv
import json
import re

from r3kit.eval.evaluate import proportion
from r3kit.infra.io import write_json, write_jsonl
from r3kit.report.figures import all_figures, study_training_curves, table_markdown, training_curves


def _entry(successes, n=200):
    return proportion(successes, n)


def make_run(path):
    for which, base in (("vanilla", 60), ("trained", 80), ("retry_control", 70)):
        metrics = {"first_try": _entry(base), "second_try": _entry(base + 20), "retry_no_reflection": _entry(base + 10),
                   "retry_generic_reflection": _entry(base + 12),
                   "by_difficulty": {"3 numbers": {"first_try": _entry(base // 2, 100), "second_try": _entry(base // 2 + 9, 100)},
                                     "4 numbers": {"first_try": _entry(base // 4, 100), "second_try": _entry(base // 4 + 3, 100)}}}
        if which == "vanilla":
            metrics["swapped_reflection"] = {"own": _entry(30, 120), "swapped": _entry(12, 120),
                                             "own_vs_swapped": {"gained": 25, "lost": 7, "p_value": 0.002}}
            metrics["reflections_read"] = {"values_right": _entry(12, 120), "names_the_fault": _entry(30, 120),
                                           "conclusion_verifies": _entry(18, 120), "repeats_failed": None}
            metrics["oracle_reflection"] = {"own": _entry(30, 110), "oracle": _entry(66, 110),
                                            "own_vs_oracle": {"gained": 3, "lost": 39, "p_value": 1e-9}}
        if which != "vanilla":
            metrics["on_vanilla_failures"] = {"baseline": _entry(30, 120), "model": _entry(base - 30, 120),
                                              "paired": {"gained": base - 40, "lost": 10, "p_value": 0.001}}
            metrics["frozen_retrier"] = {"baseline": _entry(30, 120), "model": _entry(base - 45, 120),
                                         "paired": {"gained": base - 55, "lost": 20, "p_value": 0.04}}
            metrics["paired_vs_vanilla"] = {"first_try": {"gained": 30, "lost": 31, "p_value": 0.6},
                                            "second_try": {"gained": 45, "lost": 20, "p_value": 0.001},
                                            "changed_first_attempts": 77, "n": 200}
        existing = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
        write_json(path / "metrics.json", {**existing, which: metrics})
        write_jsonl(path / "eval" / which / "transcripts.jsonl",
                    [{"second": {"reflection": {"reflection_tokens": 5 + i % (7 if which == "vanilla" else 3)}}} for i in range(50)])
    for variant in ("r3", "retry_control"):
        (path / "train" / variant).mkdir(parents=True)
        with open(path / "train" / variant / "log.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "reward", "frac_zero_std", "reflection_tokens", "kl"])
            writer.writeheader()
            for step in range(1, 31):
                writer.writerow({"step": step, "reward": 0.2 + step / 100, "frac_zero_std": 0.5, "reflection_tokens": 8, "kl": step / 1000})


def test_all_figures_from_files(tmp_path):
    make_run(tmp_path)
    files = all_figures(tmp_path)
    names = {p.name for p in files}
    assert names == {"table.md", "table.png", "accuracy.png", "fixed_failures.png", "training_curves.png", "conclusion.md",
                     "reflection_length.png", "accuracy_by_difficulty.png"}
    for path in files:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    table = table_markdown(tmp_path)
    assert table.startswith("R3's preconditions: not recorded for this run")  # before any result
    assert "| vanilla | 30.0 [" in table and "| R3 | 40.0 [" in table and "n = 200" in table
    assert "vanilla model's 120 failed first attempts" in table and "| vanilla | 25.0 [" in table
    assert "| R3 | 41.7 [" in table and "40 gained, 10 lost, p = 0.001 |" in table
    assert "the same 200 problems" in table
    assert "then the *vanilla* model's retry" in table and "| R3 | 29.2 [" in table
    assert "| R3 | 29.2 [21.8, 37.8] | 25 gained, 20 lost, p = 0.04 |" in table  # its reflection, vanilla's retry
    assert "after its reflection on another problem 10.0 [" in table and "own gained 25, lost 7, p = 0.002" in table
    assert re.search(r"\| vanilla \| 10\.0 \[[^]]*\] \| 25\.0 \[[^]]*\] \| 15\.0 \[[^]]*\] \| — \|", table)
    assert "after the task's solver's reflection 60.0 [" in table and "(110 failed attempts the solver solves; own gained 3" in table
    assert "| R3 | 30 gained, 31 lost, p = 0.6 | 45 gained, 20 lost, p = 0.001 | 77 |" in table


def test_training_curves_without_kl_plot_entropy(tmp_path):
    """beta = 0 runs log no KL (TRL skips the reference model): the last panel shows entropy instead."""
    folder = tmp_path / "train" / "r3"
    folder.mkdir(parents=True)
    with open(folder / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "reward", "frac_zero_std", "reflection_tokens", "kl", "entropy"])
        writer.writeheader()
        for step in range(1, 21):
            writer.writerow({"step": step, "reward": 0.1, "frac_zero_std": 0.5, "reflection_tokens": 30, "kl": "",
                             "entropy": 0.3})
    out = training_curves(tmp_path, tmp_path / "curves.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_model_keeps_its_colour_and_name_in_every_figure(tmp_path):
    """One colour per arm whichever record names it (the study's "r3", metrics.json's "trained", the trainer's
    "reflection"); conditions use colours no model has; an unknown name is a clear error."""
    import pytest
    from matplotlib.colors import to_hex

    from r3kit.report import palette
    from r3kit.report.figures import CURVES, MODELS, curves_figure

    assert palette.colour("trained") == palette.colour("r3") == palette.colour("reflection") == palette.colour("trained-last")
    assert len({palette.colour(arm) for arm in palette.ARMS}) == len(palette.ARMS)
    assert not {shade for _, shade in palette.CONDITIONS.values()} & {palette.colour(arm) for arm in palette.ARMS}
    assert dict(MODELS)["trained"] == "R3" and palette.name("grpo", rewards=True) == "plain GRPO (reward on the first attempt)"
    with pytest.raises(KeyError, match="no arm is named 'dpo'"):
        palette.colour("dpo")
    rows = [{"step": s, "reward": 0.1, "frac_zero_std": 0.5, "reflection_tokens": 8, "kl": 0.01} for s in (1, 2)]
    fig = curves_figure({"r3": rows, "grpo": rows})
    lines = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert lines == {CURVES["r3"][0]: palette.colour("r3"), CURVES["grpo"][0]: palette.colour("grpo")}


def test_the_conclusion_is_written_from_the_files_and_reads_the_gate_first(tmp_path):
    """Numbers come from metrics.json; a failed gate says the result is no verdict on R3; a passed one says it tests
    R3 where a reflection can help; a significant difference names the side it favours."""
    from r3kit.report.conclusion import run_conclusion, study_conclusion

    make_run(tmp_path)
    text = run_conclusion(tmp_path)
    assert text.index("preconditions were not recorded") < text.index("**R3 (reward on the reflection)**")
    assert "second try 50.0% [43.1, 56.9] against vanilla's 40.0% [33.5, 46.9]" in text
    assert "45 gained and 20 lost" in text and "R3 did better than vanilla on the second try (p = 0.001)" in text
    assert "one training seed" in text
    gate = {"measured": True, "passed": False, "failed": [">= 50% of GRPO groups carry signal"]}
    write_json(tmp_path / "preconditions.json", gate)
    assert "preconditions failed (>= 50% of GRPO groups carry signal), so what follows says how R3 behaves where " \
           "a reflection cannot help" in run_conclusion(tmp_path)
    difference = {"mean": -0.042, "ci_low": -0.074, "ci_high": -0.009, "p_t": 0.024, "p_wilcoxon": 0.0625}
    study = {"preconditions": {"0": None}, "seeds_evaluated": [0, 1, 2, 3, 4], "students": [0, 1],
             "endpoints": {"r3 - vanilla: frozen_retrier": difference, "r3 - grpo: second_try": None},
             "differences": {}, "selection": "validation split"}
    text = study_conclusion(study)
    assert "Endpoints declared in the study's profile" in text and "(5 seeds evaluated, 2 students" in text
    assert "R3 − vanilla: frozen retrier: -4.2 points [-7.4, -0.9] over 5 paired seeds" in text and "vanilla did better" in text
    assert "R3 − plain GRPO: second try: not yet measured" in text
    study["endpoints"]["r3 - grpo: second_try"] = {**difference, "n": 3, "p_t": None}  # identical differences: no spread
    assert "over 3 paired seeds" in study_conclusion(study) and "the t-test is undefined" in study_conclusion(study)


def test_study_training_curves_average_each_arm_over_the_steps_every_seed_reached(tmp_path):
    def log(rewards):
        return [{"step": str(i + 1), "reward": str(r), "frac_zero_std": "0.5"} for i, r in enumerate(rewards)]

    out = tmp_path / "study_training.png"
    assert study_training_curves({"r3": [], "grpo": []}, out) is None and not out.exists()  # nothing trained yet
    logs = {"r3": [log([0.1, 0.2, 0.3]), log([0.3, 0.4]), []], "grpo": [log([0.5, 0.5, 0.5])]}  # seeds cut short
    assert study_training_curves(logs, out) == out and out.stat().st_size > 0
