"""Live training curves, experiment tracking and notebook behaviour: the figure redraws in place as TRL
logs, trackio records a run offline, and bad tracker settings fail before any model loads."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import CFG, COMPACT, FAILURES, EvenRetry, reflections_then_retries

from r3kit.core.trainer import TrainConfig, build_trainer
from r3kit.infra import notebook, tracking
from r3kit.models.loading import ModelConfig, attach_lora, load_model
from r3kit.report import figures as plots
from r3kit.report.live import LiveCurves, live_curves


class Recorder:
    """IPython's display(obj, display_id=True) -> handle; handle.update(obj) replaces that output."""

    def __init__(self):
        self.events = []

    def __call__(self, obj, display_id=False):
        assert display_id is True
        self.events.append(("display", obj.data))
        return self

    def update(self, obj):
        self.events.append(("update", obj.data))


def tiny_lora():
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    return attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}), tokenizer


def test_live_curves_redraw_in_place_every_n_steps(tmp_path, monkeypatch):
    model, tokenizer = tiny_lora()
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 3, "save_steps": 3})
    trainer = build_trainer(model, tokenizer, EvenRetry(prompts=COMPACT), FAILURES, cfg, tmp_path,
                            reflections_then_retries(tokenizer))
    recorder, drawn = Recorder(), []
    real = plots.curves_figure
    monkeypatch.setattr(plots, "curves_figure", lambda logs, title="": drawn.append(logs) or real(logs, title))
    live = LiveCurves("reflection", 2, tmp_path / "log.csv", display=recorder)
    trainer.add_callback(live)
    trainer.train()
    # step 2 (every 2), then step 3 at the end: one display, then updates of that same output
    assert [kind for kind, _ in recorder.events] == ["display", "update"] and live.drawn == 3
    assert all(png.startswith(b"\x89PNG") for _, png in recorder.events)
    assert [[int(r["step"]) for r in logs["r3"]] for logs in drawn] == [[1, 2], [1, 2, 3]]  # the log, as written
    assert len(list(csv.DictReader(open(tmp_path / "log.csv")))) == 3


@pytest.mark.parametrize("kernel, every, attached", [(True, 5, True), (False, 5, False), (True, 0, False)])
def test_live_curves_attach_only_in_a_notebook(monkeypatch, tmp_path, kernel, every, attached):
    monkeypatch.setattr(notebook, "in_notebook", lambda: kernel)
    model, tokenizer = tiny_lora()
    cfg = TrainConfig(**{**CFG.__dict__, "live_every": every})
    trainer = build_trainer(model, tokenizer, EvenRetry(prompts=COMPACT), FAILURES, cfg, tmp_path,
                            reflections_then_retries(tokenizer), extra_callbacks=live_curves)
    assert any(isinstance(c, LiveCurves) for c in trainer.callback_handler.callbacks) == attached


def test_tracker_settings_fail_clearly_before_training():
    with pytest.raises(ValueError, match=r"report_to must be one of \('trackio', 'wandb', 'tensorboard', 'none'\)"):
        TrainConfig(report_to="mlflow").validate()
    with pytest.raises(ValueError, match="report_to='wandb' needs the wandb package"):
        TrainConfig(report_to="wandb").validate()
    with pytest.raises(ValueError, match="live_every must be >= 0"):
        TrainConfig(live_every=-1).validate()
    assert TrainConfig().report_to == "none"  # conftest: R3KIT_REPORT_TO=none for the tests
    assert tracking.default_report_to() == "none" and tracking.callbacks("none") == ([], [])


def test_trackio_dashboard_is_embedded_only_where_a_person_watches(monkeypatch):
    import inspect

    import trackio
    from transformers.integrations import TrackioCallback

    assert "self._trackio.init(" in inspect.getsource(TrackioCallback.setup)  # what the proxy relies on
    calls = []
    monkeypatch.setattr(trackio, "init", lambda **kwargs: calls.append(kwargs))

    def embeds():
        report_to, (callback,) = tracking.callbacks("trackio")
        assert report_to == [] and isinstance(callback, TrackioCallback)
        callback._trackio.init(project="r3kit", name="run")  # as TrackioCallback.setup calls it
        assert calls[-1]["project"] == "r3kit" and callback._trackio.log is trackio.log  # the rest is trackio's own
        return calls[-1]["embed"]

    assert embeds() is False  # a script, a test
    monkeypatch.setattr(notebook, "in_notebook", lambda: True)
    assert embeds() is True  # JupyterLab
    monkeypatch.setenv("R3KIT_BATCH", "1")  # papermill, through r3kit reproduce
    assert embeds() is False


def test_a_resumed_run_keeps_its_tracked_run_and_a_fresh_one_starts_another(tmp_path):
    first = tracking.run_name(tmp_path)
    assert first.startswith(str(tmp_path)) and (tmp_path / "tracking.txt").exists()
    (tmp_path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    assert tracking.run_name(tmp_path) == first  # resuming from a checkpoint
    (tmp_path / "tracking.txt").write_text("older run\n")
    assert tracking.run_name(tmp_path) == "older run"
    (tmp_path / "checkpoints" / "checkpoint-2").rmdir()
    assert tracking.run_name(tmp_path) != "older run"  # no checkpoint: a fresh run


@pytest.mark.slow
def test_trackio_records_a_training_run_offline(tmp_path):
    """Two GRPO steps with report_to='trackio' in a fresh process (trackio reads TRACKIO_DIR on import);
    the tracker's database then holds both steps with the rewards log.csv holds."""
    script = f"""
import sys
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent / 'support')!r}]
from test_train import CFG, COMPACT, FAILURES, EvenRetry, reflections_then_retries
from r3kit.models.loading import ModelConfig
from r3kit.core.trainer import TrainConfig, train
cfg = TrainConfig(**{{**CFG.__dict__, "report_to": "trackio"}})
train(ModelConfig(name="tiny"), EvenRetry(prompts=COMPACT), FAILURES, cfg, {str(tmp_path / "run")!r},
      reflections_then_retries(__import__("r3kit.models.loading", fromlist=["x"]).load_model(ModelConfig(name="tiny"))[1]))
from trackio.sqlite_storage import SQLiteStorage
import json
print("LOGS=" + json.dumps(SQLiteStorage.get_logs("r3kit", open({str(tmp_path / "run" / "tracking.txt")!r}).read().strip())))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(TRACKIO_DIR=str(tmp_path / "trackio"), R3KIT_REPORT_TO="trackio")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = json.loads(done.stdout.split("LOGS=")[1])
    rewards = [float(r["reward"]) for r in csv.DictReader(open(tmp_path / "run" / "log.csv"))]
    assert [row["train/reward"] for row in logs if "train/reward" in row] == pytest.approx(rewards) and len(rewards) == 2
    assert (tmp_path / "trackio" / "r3kit.db").exists()
    assert "127.0.0.1" not in done.stdout  # no dashboard server outside a notebook


@pytest.mark.slow
def test_a_jupyter_kernel_sends_one_figure_then_updates_it_in_place(tmp_path):
    """What JupyterLab receives while a notebook trains: one display_data (a PNG) with a display id, then an
    update_display_data for that same id each step, which the front end draws in place."""
    from jupyter_client.manager import start_new_kernel

    code = f"""
import sys
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent / 'support')!r}]
from test_train import CFG, COMPACT, FAILURES, EvenRetry, reflections_then_retries
from r3kit.models.loading import ModelConfig, attach_lora, load_model
from r3kit.core.trainer import TrainConfig, build_trainer
from r3kit.report.live import live_curves
model, tok = load_model(ModelConfig(name="tiny"))
model = attach_lora(model, {{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}})
cfg = TrainConfig(**{{**CFG.__dict__, "steps": 3, "save_steps": 3, "live_every": 1}})
build_trainer(model, tok, EvenRetry(prompts=COMPACT), FAILURES, cfg, {str(tmp_path)!r}, reflections_then_retries(tok),
              extra_callbacks=live_curves).train()
"""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        msg_id, events, errors = kc.execute(code), [], []
        while True:
            msg = kc.get_iopub_msg(timeout=600)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            if msg["msg_type"] in ("display_data", "update_display_data") and "image/png" in content["data"]:
                events.append((msg["msg_type"], content["transient"]["display_id"]))
            errors += [content["evalue"]] if msg["msg_type"] == "error" else []
            if msg["msg_type"] == "status" and content["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not errors
    assert [kind for kind, _ in events] == ["display_data", "update_display_data", "update_display_data"]
    assert len({display_id for _, display_id in events}) == 1


def test_a_batch_kernel_sends_stderr_to_its_log_and_says_where(tmp_path, monkeypatch):
    """A kernel `r3kit reproduce` starts: Python's stderr and a logging handler made before r3kit loads reach
    the log, in the cell that imports r3kit and in every later cell, and nothing (not even a C extension
    writing to file descriptor 2) reaches the notebook as stderr; the notebook gets one line naming the log."""
    from jupyter_client.manager import start_new_kernel

    monkeypatch.setenv("R3KIT_STDERR_LOG", str(tmp_path / "logs" / "01_nb.log"))
    cells = ["""
import logging, os, sys, time
early = logging.getLogger("early"); early.addHandler(logging.StreamHandler())
import r3kit
print("kept on stdout")
print("python stderr", file=sys.stderr)
""", """
early.warning("a handler made before")
print("a later cell", file=sys.stderr)
os.write(2, b"file descriptor 2\\n")
time.sleep(0.5)
"""]
    km, kc = start_new_kernel(kernel_name="python3")
    streams = []
    try:
        for code in cells:
            msg_id = kc.execute(code)
            while True:
                msg = kc.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    streams.append((msg["content"]["name"], msg["content"]["text"]))
                assert msg["msg_type"] != "error", msg["content"]
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert [name for name, _ in streams if name == "stderr"] == []
    stdout = "".join(text for _, text in streams)
    assert "01_nb.log in the run folder's logs/" in stdout and "kept on stdout" in stdout
    log = (tmp_path / "logs" / "01_nb.log").read_text()
    assert log == "python stderr\na handler made before\na later cell\n"


def test_outside_a_batch_kernel_stderr_is_left_alone(monkeypatch):
    monkeypatch.delenv("R3KIT_STDERR_LOG", raising=False)
    assert notebook.stderr_to_log() is None and not hasattr(sys.stderr, "r3kit_log")
