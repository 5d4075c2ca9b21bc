"""Checkpoint selection: the best validation score wins (ties: the later step), and a saved choice is reused."""

import json

import pytest

from r3kit.eval.selection import SelectionConfig, best_step
from r3kit.runs.pipeline import select_stage
from r3kit.runs.profiles import resolve


def test_best_step_takes_the_highest_score_and_the_later_step_on_a_tie():
    assert best_step({25: 0.31, 50: 0.35}) == 50
    assert best_step({25: 0.40, 50: 0.35}) == 25
    assert best_step({25: 0.35, 50: 0.35, 75: 0.2}) == 50
    with pytest.raises(ValueError, match="no checkpoint"):
        best_step({})


def test_selection_config_names_bad_values():
    with pytest.raises(ValueError, match="select.metric"):
        SelectionConfig(metric="test_accuracy").validate()
    with pytest.raises(ValueError, match="needs the 'reflection' condition"):
        SelectionConfig(conditions=("no_reflection",)).validate()
    with pytest.raises(ValueError, match="n_examples"):
        SelectionConfig(n_examples=0).validate()


def test_a_saved_choice_is_reused_with_integer_steps_only_for_the_same_settings_and_training(tmp_path):
    import dataclasses

    run = resolve("smoke-study", tmp_path)
    folder = tmp_path / "train" / "r3-seed1"
    with pytest.raises(ValueError, match="has not finished"):
        select_stage(run, "r3-seed1")
    (folder / "model").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)  # a saved state but no weights: loading would fail
    (folder / "checkpoints" / "checkpoint-1" / "trainer_state.json").write_text("{}")
    (folder / "summary.json").write_text(json.dumps({"steps": 2}))
    saved = {"split": "validation", "n": 8, "metric": "second_try", "settings": dataclasses.asdict(run.select),
             "scores": {1: 0.5, 2: 0.25}, "selected": 1, "last": 2}
    (folder / "selection.json").write_text(json.dumps(saved))
    again = select_stage(run, "r3-seed1")  # no model is loaded: the choice stands
    assert again["scores"] == {1: 0.5, 2: 0.25} and again["scores"][again["selected"]] == 0.5
    report_less = dataclasses.replace(run, select=dataclasses.replace(run.select, score_last=False))
    assert select_stage(report_less, "r3-seed1")["selected"] == 1  # what the test split scores is not the choice
    other = resolve("smoke-study", tmp_path, overrides={"select": {"metric": "first_try"}})
    with pytest.raises(ValueError, match="no trained weights in .*checkpoint-1"):  # other settings: chosen again
        select_stage(other, "r3-seed1")


def test_training_that_will_take_steps_drops_a_choice_made_on_other_weights(tmp_path, monkeypatch):
    """A resumed run whose checkpoints are gone (a fresh clone of a shipped run) trains again, so a selection.json
    left from the earlier weights is removed; one whose last checkpoint holds the whole budget keeps it."""
    import r3kit.runs.pipeline as pipeline

    run = resolve("smoke", tmp_path, overrides={"preconditions": None})
    monkeypatch.setattr(pipeline, "load_failures", lambda folder: [])
    monkeypatch.setattr(pipeline, "train", lambda *args, **kwargs: {"steps": run.train.steps})
    folder = tmp_path / "train" / "r3"
    folder.mkdir(parents=True)
    (folder / "selection.json").write_text("{}")
    (folder / "checkpoints" / f"checkpoint-{run.train.steps}").mkdir(parents=True)
    (folder / "checkpoints" / f"checkpoint-{run.train.steps}" / "trainer_state.json").write_text("{}")
    pipeline.train_stage(run, "r3")
    assert (folder / "selection.json").exists()  # the whole budget is saved: the same weights
    (folder / "checkpoints" / f"checkpoint-{run.train.steps}" / "trainer_state.json").unlink()
    pipeline.train_stage(run, "r3")
    assert not (folder / "selection.json").exists()
