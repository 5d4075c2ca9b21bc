"""Failure mining: keep rules, what is saved, and resuming after a crash with nothing lost or duplicated."""

import pytest
from fakes import ScriptedGenerator

from r3kit.core.mining import MiningConfig, load_failures, mine_failures
from r3kit.infra.io import read_json
from r3kit.tasks import get_task

TASK = get_task("countdown", style="compact")
PROBLEMS = [{"target": t, "nums": [t, 1, 1]} for t in range(2, 22)]  # <answer>t*1*1</answer> solves each


def alternating():
    """Per call: correct on even targets; on odd targets the k attempts alternate wrong, right, wrong, ..."""
    counter = {}

    def script(conversation):
        text = conversation[-1]["content"]
        target = int(text.split("= ")[1])
        counter[text] = counter.get(text, 0) + 1
        if target % 2 == 0 or counter[text] % 2 == 0:
            return f"<answer>{target}*1*1</answer>"
        return "<answer>1</answer>"

    return script


def test_keep_rules_and_saved_rows(tiny, tmp_path):
    cfg = MiningConfig(k=2, keep="any", chunk_size=8)
    failures = mine_failures(None, None, TASK, PROBLEMS, cfg, tmp_path / "any", generator=ScriptedGenerator(tiny[1], alternating()))
    assert sorted(failures["target"]) == [t for t in range(2, 22) if t % 2]
    assert set(failures["failed_attempt"]) == {"<answer>1</answer>"} and set(failures["failures"]) == {1}
    assert failures.column_names[:2] == ["target", "nums"] and "source_index" in failures.column_names
    manifest = read_json(tmp_path / "any" / "manifest.json")
    assert manifest["counts"] == {"problems": 20, "attempts": 40, "passed": 30, "kept": 10}
    assert manifest["parameters"]["k"] == 2 and manifest["wall_seconds"] >= 0
    strict = mine_failures(None, None, TASK, PROBLEMS, MiningConfig(k=2, keep="all", chunk_size=8), tmp_path / "all",
                           generator=ScriptedGenerator(tiny[1], alternating()))
    assert len(strict) == 0  # no odd problem failed both attempts
    assert len(load_failures(tmp_path / "any")) == 10


def test_killed_mining_resumes_without_loss_or_duplicates(tiny, tmp_path):
    cfg = MiningConfig(k=2, keep="any", chunk_size=4)  # 5 chunks
    crashing = ScriptedGenerator(tiny[1], alternating(), fail_after=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        mine_failures(None, None, TASK, PROBLEMS, cfg, tmp_path, generator=crashing)
    assert len(list((tmp_path / "chunks").glob("chunk-*.jsonl"))) == 3
    resumed = ScriptedGenerator(tiny[1], alternating())
    failures = mine_failures(None, None, TASK, PROBLEMS, cfg, tmp_path, generator=resumed)
    assert len(resumed.calls) == 2  # only the two unfinished chunks were mined again
    assert sorted(failures["source_index"]) == sorted(i for i, p in enumerate(PROBLEMS) if p["target"] % 2)
    assert read_json(tmp_path / "manifest.json")["chunks_resumed"] == 3
    with pytest.raises(ValueError, match="other parameters"):
        mine_failures(None, None, TASK, PROBLEMS, MiningConfig(k=3, chunk_size=4), tmp_path, generator=resumed)


def test_bad_parameters_fail_before_generation(tiny, tmp_path):
    never = ScriptedGenerator(tiny[1], alternating(), fail_after=0)
    for cfg, message in [(MiningConfig(k=0), "k .attempts per problem. must be >= 1"),
                         (MiningConfig(keep="some"), "keep must be"),
                         (MiningConfig(k=4, temperature=0.0), "temperature 0")]:
        with pytest.raises(ValueError, match=message):
            mine_failures(None, None, TASK, PROBLEMS, cfg, tmp_path, generator=never)
    with pytest.raises(ValueError, match="training split is empty"):
        mine_failures(None, None, TASK, [], MiningConfig(), tmp_path, generator=never)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("chess")
