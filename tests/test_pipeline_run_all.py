"""run_all: every stage of a profile in one process (the Colab notebook), resuming after a disconnect."""

import pytest

from r3kit.profiles import resolve


@pytest.mark.slow
def test_run_all_skips_what_is_done_and_redoes_a_stage_cut_short(tmp_path, monkeypatch):
    import r3kit.evaluate
    import r3kit.pipeline as pipeline

    run = resolve("smoke", tmp_path / "smoke")
    real = r3kit.evaluate.on_fixed_failures
    calls = {"n": 0}

    def disconnect(*args, **kwargs):  # the runtime dies inside the trained model's evaluation, after its
        calls["n"] += 1               # own transcripts and metrics are written but before the run's metrics
        if calls["n"] == 1:
            raise KeyboardInterrupt("runtime disconnected")
        return real(*args, **kwargs)

    monkeypatch.setattr(r3kit.evaluate, "on_fixed_failures", disconnect)
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
    import r3kit.pipeline as pipeline
    from r3kit.io import read_json, read_jsonl
    from r3kit.models import load_tokenizer
    from r3kit.student_calls import TOKENS

    run = resolve("smoke-function-calling", tmp_path / "fc")
    ran = pipeline.run_all(run, log=lambda m: None)
    assert ran == ["student", "evaluate vanilla", "mine failures", "train r3", "evaluate trained", "train retry_control",
                   "evaluate retry_control", "figures"]
    assert load_tokenizer(run.model).convert_tokens_to_ids(list(TOKENS)) == list(range(264, 264 + len(TOKENS)))
    metrics = read_json(tmp_path / "fc" / "metrics.json")
    assert {"vanilla", "trained", "retry_control"} <= set(metrics) and metrics["vanilla"]["task"] == "function_calling"
    task = run.get_task()
    kinds = {task.reason_category(t["first"]["verdict"]["reason"])
             for t in read_jsonl(tmp_path / "fc" / "eval" / "vanilla" / "transcripts.jsonl")}
    assert kinds and kinds <= set(task.failure_categories) | {"correct"}
    figures = tmp_path / "fc" / "figures"
    assert (figures / "failure_categories.png").stat().st_size > 10_000
    samples = (figures / "reflections.md").read_text()
    assert "## vanilla vs R3-trained" in samples and samples.count("### problem") >= 2
