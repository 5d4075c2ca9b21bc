"""Data sources: offline generators, local files, the hub path (with datasets.load_dataset stubbed)."""

import json

import datasets
import pytest

from r3kit.data import DataConfig, check_splits, load_split
from r3kit.data import countdown as cd
from r3kit.data import function_calling as fc
from r3kit.tasks import get_task


def test_generators_are_deterministic_and_have_hub_columns():
    assert cd.generate(50, seed=3) == cd.generate(50, seed=3)
    assert cd.generate(50, seed=3) != cd.generate(50, seed=4)
    assert fc.generate(50, seed=3) == fc.generate(50, seed=3)
    assert all(set(row) == {"target", "nums"} for row in cd.generate(20))
    assert all(set(row) == {"query", "tools", "answers"} for row in fc.generate(20))


def test_countdown_generator_respects_ranges():
    rows = cd.generate(200, seed=1, num_counts=(4,), min_num=2, max_num=9, min_target=10, max_target=30)
    assert all(len(r["nums"]) == 4 and all(2 <= n <= 9 for n in r["nums"]) and 10 <= r["target"] <= 30 for r in rows)
    assert len({cd.key(r) for r in rows}) == 200
    with pytest.raises(ValueError, match="num_counts"):
        cd.generate(1, num_counts=(1,))
    with pytest.raises(ValueError, match="empty range"):
        cd.generate(1, min_num=9, max_num=2)


def test_function_calling_rows_verify_with_their_own_answers_and_offer_the_tools():
    task = get_task("function_calling")
    rows = fc.generate(300, seed=0)
    assert any(len(json.loads(r["answers"])) > 1 for r in rows)  # multi-call rows
    assert any(len(json.loads(r["tools"])) > len({c["name"] for c in json.loads(r["answers"])}) for r in rows)  # distractors
    types = {type(v).__name__ for r in rows for call in json.loads(r["answers"]) for v in call["arguments"].values()}
    assert {"str", "int", "float", "list", "bool"} <= types
    for row in rows:
        task.validate_example(row)
        offered = {t["name"] for t in json.loads(row["tools"])}
        assert {c["name"] for c in json.loads(row["answers"])} <= offered
        assert task.verify(f"<tool_call>{row['answers']}</tool_call>", row).ok


@pytest.mark.parametrize("task", ["countdown", "function_calling"])
def test_generated_splits_are_disjoint_and_sized(task):
    cfg = DataConfig(task=task, source="generate", n_train=300, n_test=100, seed=5)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) == 300 and len(test) == 100
    key = cd.key if task == "countdown" else fc.key
    assert not {key(r) for r in train} & {key(r) for r in test}
    assert load_split(cfg, "test")[:] == test[:]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_local_files_load_with_a_seeded_split(tmp_path, suffix):
    rows = [{"query": f"q{i}", "tools": "[]", "answers": "[]", "id": i} for i in range(30)]
    path = tmp_path / f"rows{suffix}"
    frame = datasets.Dataset.from_list(rows)
    {".jsonl": frame.to_json, ".parquet": frame.to_parquet, ".csv": frame.to_csv}[suffix](str(path))
    cfg = DataConfig(task="function_calling", source=str(path), n_test=10, n_train=None, seed=1)
    test, train = load_split(cfg, "test"), load_split(cfg, "train")
    assert len(test) == 10 and len(train) == 20
    assert test.column_names == ["query", "tools", "answers"]  # projected onto the hub columns
    assert not set(test["query"]) & set(train["query"])


def test_missing_columns_and_bad_sources_are_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"target": 3}\n' * 5)
    with pytest.raises(ValueError, match="lacks column"):
        load_split(DataConfig(task="countdown", source=str(path), n_test=1), "test")
    with pytest.raises(ValueError, match="neither 'generate', 'hub' nor an existing file"):
        load_split(DataConfig(task="countdown", source="nowhere.jsonl"), "test")
    with pytest.raises(ValueError, match="unknown task"):
        load_split(DataConfig(task="chess"), "test")
    with pytest.raises(ValueError, match="split must be"):
        load_split(DataConfig(), "dev")
    with pytest.raises(ValueError, match="no validation split"):
        load_split(DataConfig(), "validation")
    with pytest.raises(ValueError, match="n_validation"):
        DataConfig(n_validation=-1).validate()


def test_hub_source_uses_the_paper_dataset_ids(monkeypatch):
    seen = []

    def fake_load_dataset(name, split):
        seen.append((name, split))
        return datasets.Dataset.from_list([{"target": i, "nums": [i, 1], "extra": 0} for i in range(40)])

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    test = load_split(DataConfig(task="countdown", source="hub", n_test=15, seed=0), "test")
    assert seen == [("Jiayi-Pan/Countdown-Tasks-3to4", "train")]
    assert len(test) == 15 and test.column_names == ["target", "nums"]


def test_hub_source_offline_is_a_clear_error():
    with pytest.raises(ValueError, match="needs internet"):
        load_split(DataConfig(task="function_calling", source="hub"), "test")


@pytest.mark.parametrize("kind", ["hub", "datasets"])
def test_a_gated_dataset_says_what_to_do(monkeypatch, kind, tmp_path):
    """xLAM is gated: datasets wraps the hub's GatedRepoError into DatasetNotFoundError, or it arrives bare."""
    import datasets
    import httpx
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import GatedRepoError

    from r3kit.data import DataConfig, load_split

    hub_id = "Salesforce/xlam-function-calling-60k"

    def gated(*args, **kwargs):
        if kind == "hub":
            raise GatedRepoError("401 Client Error", response=httpx.Response(401, request=httpx.Request("GET", "https://hf.co")))
        raise DatasetNotFoundError(f"Dataset '{hub_id}' is a gated dataset on the Hub. You must be authenticated to access it.")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))  # no saved login either
    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(ValueError, match=rf"{hub_id} is a gated dataset .*no Hugging Face token was found.*accept its "
                                         "terms.*set HF_TOKEN"):
        load_split(DataConfig(task="function_calling", source="hub"), "test")
    (tmp_path / "token").write_text("hf_saved_by_a_login")  # read as the hub client reads it, not from HF_TOKEN alone
    with pytest.raises(ValueError, match="a token was found, but its account has no access"):
        load_split(DataConfig(task="function_calling", source="hub"), "test")


@pytest.mark.parametrize("task", ["countdown", "function_calling"])
def test_three_generated_splits_are_disjoint_and_adding_validation_leaves_test_unchanged(task):
    key = cd.key if task == "countdown" else fc.key
    two = DataConfig(task=task, source="generate", n_train=200, n_test=50, seed=3)
    three = DataConfig(task=task, source="generate", n_train=200, n_test=50, n_validation=40, seed=3)
    train, validation, test = (load_split(three, s) for s in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (200, 40, 50)
    keys = [{key(r) for r in split} for split in (train, validation, test)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert test[:] == load_split(two, "test")[:]  # the test split does not move when a validation split is added


def test_file_splits_are_de_duplicated_by_problem_key(tmp_path):
    # 40 rows over 20 distinct problems (each twice, numbers in another order the second time)
    rows = [{"target": t, "nums": [t, 1, 2]} for t in range(20)] + [{"target": t, "nums": [2, 1, t]} for t in range(20)]
    path = tmp_path / "rows.jsonl"
    datasets.Dataset.from_list(rows).to_json(str(path))
    cfg = DataConfig(task="countdown", source=str(path), n_test=5, n_validation=5, n_train=None, seed=0)
    train, validation, test = (load_split(cfg, s) for s in ("train", "validation", "test"))
    keys = [[cd.key(r) for r in split] for split in (train, validation, test)]
    assert len(set(keys[1])) == len(keys[1]) == 5
    assert not set(keys[0]) & set(keys[1]) and not set(keys[0]) & set(keys[2]) and not set(keys[1]) & set(keys[2])
    assert len(set(keys[2])) + len(keys[1]) + len(set(keys[0])) == 20  # every problem lands in exactly one split
    with pytest.raises(ValueError, match="distinct problems"):
        load_split(DataConfig(task="countdown", source=str(path), n_test=5, n_validation=30), "validation")


def test_split_sizes_the_ranges_cannot_supply_are_named_before_any_split_is_read():
    narrow = {"num_counts": [3], "min_num": 1, "max_num": 4, "min_target": 1, "max_target": 10}  # about 150 problems
    check_splits(DataConfig(task="countdown", source="generate", n_train=40, n_test=40, n_validation=20,
                            generator=narrow))
    with pytest.raises(ValueError, match=r"n_train = 500 training problems besides the 60 held out .*lower data.n_train"):
        check_splits(DataConfig(task="countdown", source="generate", n_train=500, n_test=40, n_validation=20,
                                generator=narrow))
    with pytest.raises(ValueError, match=r"n_test \+ n_validation = 600 held-out problems"):
        check_splits(DataConfig(task="countdown", source="generate", n_train=10, n_test=500, n_validation=100,
                                generator=narrow))
