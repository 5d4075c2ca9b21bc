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
