"""run_all: every stage of a profile in one process (the Colab notebook), resuming after a disconnect."""

import pytest

from r3kit.profiles import resolve


@pytest.mark.slow
def test_run_all_skips_what_is_done_and_resumes_what_is_not(tmp_path, monkeypatch):
    import r3kit.pipeline as pipeline

    run = resolve("smoke", tmp_path / "smoke")
    real = pipeline.train_stage
    calls = {"n": 0}

    def disconnect(run, variant="r3"):  # the runtime dies during the control's training
        if variant == "retry_control":
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt("runtime disconnected")
        return real(run, variant)

    monkeypatch.setattr(pipeline, "train_stage", disconnect)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_all(run, log=lambda m: None)
    first = (tmp_path / "smoke" / "eval" / "vanilla" / "metrics.json").stat().st_mtime
    ran = pipeline.run_all(run, log=lambda m: None)
    assert ran == ["train retry_control", "evaluate retry_control", "figures"]
    assert (tmp_path / "smoke" / "eval" / "vanilla" / "metrics.json").stat().st_mtime == first  # not redone
    assert pipeline.run_all(run, log=lambda m: None) == ["figures"]
