"""run_all: every stage of a profile in one process (the Colab notebook), resuming after a disconnect."""

import pytest

from r3kit.runs.profiles import resolve


@pytest.mark.slow
def test_run_all_skips_what_is_done_and_redoes_a_stage_cut_short(tmp_path, monkeypatch):
    import r3kit.eval.evaluate
    import r3kit.runs.pipeline as pipeline

    run = resolve("smoke", tmp_path / "smoke")
    real = r3kit.eval.evaluate.on_fixed_failures
    calls = {"n": 0}

    def disconnect(*args, **kwargs):  # the runtime dies inside the trained model's evaluation, after its
        calls["n"] += 1               # own transcripts and metrics are written but before the run's metrics
        if calls["n"] == 1:
            raise KeyboardInterrupt("runtime disconnected")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "on_fixed_failures", disconnect)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_all(run, log=lambda m: None)
    assert (tmp_path / "smoke" / "eval" / "trained" / "metrics.json").exists()
    first = (tmp_path / "smoke" / "eval" / "vanilla" / "metrics.json").stat().st_mtime
    ran = pipeline.run_all(run, log=lambda m: None)
    assert ran == ["evaluate trained", "train retry_control", "evaluate retry_control",
                   "forgetting check", "figures"]  # the cut happened before the forgetting check ran
    assert (tmp_path / "smoke" / "eval" / "vanilla" / "metrics.json").stat().st_mtime == first  # not redone
    assert pipeline.run_all(run, log=lambda m: None) == ["figures"]


@pytest.mark.slow
def test_function_calling_student_runs_every_stage_and_sorts_its_failures(tmp_path):
    """The function-calling smoke path: the student, evaluation, mining, R3 and the control, figures by failure kind."""
    import r3kit.runs.pipeline as pipeline
    from r3kit.infra.io import read_json, read_jsonl
    from r3kit.models.loading import load_tokenizer
    from r3kit.student.function_calling import TOKENS

    run = resolve("smoke-function-calling", tmp_path / "fc")
    ran = pipeline.run_all(run, log=lambda m: None)
    assert ran == ["student", "evaluate vanilla", "mine failures", "train r3", "evaluate trained", "train grpo",
                   "evaluate grpo", "train retry_control", "evaluate retry_control", "figures"]
    student = read_json(tmp_path / "fc" / "student.json")  # one extract step, then a validation check every step
    assert [c["step"] for c in student["validation_checks"]] == [2, 3] and student["steps_trained"] == 3
    assert all(0 <= c["first_try"] <= 1 for c in student["validation_checks"])
    assert student["reached_stop_at_first_try"] is False  # its target, 100%, is out of a random model's reach
    assert load_tokenizer(run.model).convert_tokens_to_ids(list(TOKENS)) == list(range(264, 264 + len(TOKENS)))
    metrics = read_json(tmp_path / "fc" / "metrics.json")
    assert {"vanilla", "trained", "retry_control"} <= set(metrics) and metrics["vanilla"]["task"] == "function_calling"
    task = run.get_task()
    kinds = {task.reason_category(t["first"]["verdict"]["reason"])
             for t in read_jsonl(tmp_path / "fc" / "eval" / "vanilla" / "transcripts.jsonl")}
    assert kinds and kinds <= set(task.failure_categories) | {"correct"}
    figures = tmp_path / "fc" / "figures"
    assert (figures / "failure_categories.png").stat().st_size > 10_000
    assert (figures / "student.png").stat().st_size > 10_000
    samples = (figures / "reflections.md").read_text()
    assert "## vanilla vs R3" in samples and samples.count("### problem") >= 2


def test_the_students_validation_check_attempts_validation_rows_only(tmp_path, monkeypatch):
    """pipeline.validation_check: greedy first attempts on the first student.check_rows validation rows, at the
    evaluation's attempt length, scored by the task's verifier; never a test row."""
    import r3kit.core.episodes
    import r3kit.runs.pipeline
    from r3kit.data import _SOURCES
    from r3kit.models.loading import load_model
    from r3kit.runs.pipeline import _rows, _test_rows, student_stage, validation_check

    run = resolve("smoke-function-calling", tmp_path / "fc", {"student": {"stop_at_first_try": None}})
    student_stage(run)
    model, tokenizer = load_model(run.model)
    real, seen = r3kit.core.episodes.first_attempts, {}

    def spy(generator, task, rows, cfg, progress=True):
        episodes = real(generator, task, rows, cfg, progress)
        seen.update(rows=rows, cfg=cfg, ok=[e.first.ok for e in episodes])
        return episodes

    monkeypatch.setattr(r3kit.runs.pipeline, "first_attempts", spy)
    rate = validation_check(run)(model, tokenizer)
    key = _SOURCES["function_calling"].key
    assert [key(r) for r in seen["rows"]] == [key(r) for r in _rows(run, "validation")[:4]]
    assert not {key(r) for r in seen["rows"]} & {key(r) for r in _test_rows(run)}
    assert seen["cfg"].attempt_tokens == run.evaluate.attempt_tokens and seen["cfg"].temperature == 0.0
    assert rate == sum(seen["ok"]) / 4


@pytest.mark.slow
def test_the_bounds_the_frozen_retrier_and_the_last_weights_can_be_left_out(tmp_path, monkeypatch):
    """evaluate.bounds, evaluate.frozen_retrier and select.score_last off: what they would add is not computed, nor
    left over from an earlier evaluation, and what the rest reads (the trained model on vanilla's failures, the chosen
    step) is still there."""
    import r3kit.runs.pipeline as pipeline
    from r3kit.infra.io import read_json, write_json

    run = resolve("smoke", tmp_path / "run", {
        "data": {"n_validation": 6}, "select": {"metric": "second_try", "score_last": False},
        "evaluate": {"bounds": False, "frozen_retrier": False}, "control": None, "forgetting": None})
    monkeypatch.setattr(pipeline, "best_step", min)  # choose the first checkpoint, so the last weights differ
    pipeline.student_stage(run)
    pipeline.evaluate_stage(run, "vanilla")
    pipeline.mine_stage(run)
    pipeline.train_stage(run, "r3")
    earlier = read_json(tmp_path / "run" / "metrics.json")  # records of earlier weights, scored with them all on
    write_json(tmp_path / "run" / "metrics.json", {**earlier, "trained-last": earlier["vanilla"]})
    (tmp_path / "run" / "eval" / "trained").mkdir(parents=True)
    (tmp_path / "run" / "eval" / "trained" / "frozen_retrier.jsonl").write_text("{}\n")
    trained = pipeline.evaluate_stage(run, "trained")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert set(metrics) == {"vanilla", "trained"}  # no "trained-last", not even the earlier one
    assert trained["checkpoint"]["step"] == 1 < trained["checkpoint"]["last"] == run.train.steps
    assert "on_vanilla_failures" in trained and "frozen_retrier" not in trained
    assert not {"swapped_reflection", "oracle_reflection"} & set(metrics["vanilla"])
    files = {p.name for p in (tmp_path / "run" / "eval").rglob("*.jsonl")}
    assert "on_vanilla_failures.jsonl" in files
    assert not {"frozen_retrier.jsonl", "swapped_reflection.jsonl", "oracle_reflection.jsonl"} & files
