"""Rows for every task, from three kinds of source, with the hub dataset's columns whatever the source.

    source = "generate"   offline generator (deterministic under the seed; train and test are disjoint)
    source = "hub"        the public dataset through datasets.load_dataset (needs internet)
    source = <path>       a local .jsonl / .json / .parquet / .csv file with the same columns

`load_split(cfg, "train" | "validation" | "test")` returns a datasets.Dataset. Three disjoint splits:
    test        touched once, at the end, for the numbers reported (the paper tested on 15,000 Countdown
                and 12,000 APIGen rows)
    validation  every choice (step count, checkpoint, learning rate) is made here; `n_validation` rows,
                0 by default (then there is none)
    train       mining and RL; it never holds a problem of the other two
Generated: test and validation come from one held-out stream (seed 2*seed+1; the first n_test rows are
the test split, the next n_validation the validation split), train from another (seed 2*seed) minus
every held-out key; a source with `streams` is told which stream it generates (function calling can then
hold out argument values, see data/function_calling.py). Hub and file sources: rows are shuffled with `cfg.seed`; the first n_test are the
test split, the next rows whose problem key is not in test form validation, and the rest, minus every
test or validation key, is the training pool. A new task registers its source with `register_source`
(its generator takes `n`, `seed` and keyword ranges).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r3kit.data import countdown as _countdown
from r3kit.data import function_calling as _function_calling
from r3kit.tasks import task_class


@dataclass(frozen=True)
class Source:
    hub_id: str
    columns: tuple[str, ...]
    generate: Callable[..., list[dict]] | None  # None: the task's rows come from a file (or the hub) only
    key: Callable[[dict], Any]
    streams: bool = False  # the generator takes stream="held_out" | "train" (for test and validation | train)


_SOURCES: dict[str, Source] = {
    "countdown": Source(_countdown.HUB_ID, _countdown.COLUMNS, _countdown.generate, _countdown.key),
    "function_calling": Source(
        _function_calling.HUB_ID, _function_calling.COLUMNS, _function_calling.generate, _function_calling.key,
        streams=True),
}


def register_source(task: str, source: Source) -> None:
    _SOURCES[task] = source


def source_for(task: str) -> Source:
    """The rows of `task` (a name or a task's import path): a registered source, or the one its Task class
    carries (columns, key, and `generate` and `hub_id` where it has them)."""
    cls = task_class(task)
    if cls.name in _SOURCES:
        return _SOURCES[cls.name]
    return Source(cls.hub_id or "", tuple(cls.columns), cls.generate, cls.key)


@dataclass
class DataConfig:
    """Where a run's problems come from. `generator` holds the generator's keyword arguments (ranges)."""

    task: str = "countdown"
    source: str = "generate"
    n_train: int | None = 20_000
    n_test: int = 1_000
    n_validation: int = 0  # 0: no validation split
    seed: int = 0
    generator: dict = field(default_factory=dict)

    def validate(self) -> None:
        source = source_for(self.task)  # unknown task -> clear error
        if (self.source == "generate" and source.generate is None) or (self.source == "hub" and not source.hub_id):
            raise ValueError(f"task {self.task!r} has no {'generate' if self.source == 'generate' else 'hub_id'} for "
                             f"data.source={self.source!r}: set data.source to a .jsonl, .json, .parquet or .csv file "
                             "of its rows")
        if self.source not in ("generate", "hub") and not Path(self.source).exists():
            raise ValueError(f"data source {self.source!r} is neither 'generate', 'hub' nor an existing file")
        if self.n_test < 1 or (self.n_train is not None and self.n_train < 1):
            raise ValueError(f"n_test and n_train must be >= 1, got {self.n_test}, {self.n_train}")
        if self.n_validation < 0:
            raise ValueError(f"n_validation must be >= 0, got {self.n_validation}")
        if "stream" in self.generator:
            raise ValueError("data.generator must not set `stream`: load_split chooses it per split")


def _read_file(path: str):
    import datasets

    suffix = Path(path).suffix.lower()
    kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(suffix)
    if kind is None:
        raise ValueError(f"cannot read {path!r}: use .jsonl, .json, .parquet or .csv")
    return datasets.load_dataset(kind, data_files=path, split="train")


def _project(dataset, columns: tuple[str, ...], origin: str):
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{origin} lacks column(s) {missing}; it has {dataset.column_names}")
    return dataset.select_columns(list(columns))


def gated_message(hub_id: str) -> str:
    from huggingface_hub import get_token  # HF_TOKEN, the saved login, or a Colab secret, as the hub client reads it

    token = "no Hugging Face token was found" if not get_token() else "a token was found, but its account has no access"
    return (f"{hub_id} is a gated dataset on the Hugging Face hub and could not be read ({token}): log in at "
            f"https://huggingface.co/datasets/{hub_id} and accept its terms, then set HF_TOKEN to an access token of that "
            "account (on Colab: the key icon, add a secret HF_TOKEN, allow notebook access) and run again")


def load_hub(hub_id: str):
    """The train split of a hub dataset; a gated or unreadable one raises a ValueError that says what to do."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import GatedRepoError

    try:
        return datasets.load_dataset(hub_id, split="train")
    except GatedRepoError:
        raise ValueError(gated_message(hub_id)) from None
    except DatasetNotFoundError as error:
        if "gated" in str(error) or "cannot be accessed" in str(error):
            raise ValueError(gated_message(hub_id)) from None
        raise


def sample_rows(cfg: DataConfig, n: int = 16) -> list[dict]:
    """A few rows of the task (offline, instant): generated stand-ins for checks made before any download, a data
    file's first rows for a task that cannot generate, or none (a hub-only task: checked once its rows load)."""
    source = source_for(cfg.task)
    if source.generate is None:  # a task without a generator: its file's first rows, or none before a hub download
        if cfg.source == "hub":
            return []
        rows = _read_file(cfg.source)
        return rows.select(range(min(n, len(rows)))).to_list()
    return source.generate(n, seed=12345, **(cfg.generator if cfg.source == "generate" else {}))


SPLITS = ("train", "validation", "test")


def load_split(cfg: DataConfig, split: str):
    """The `split` ("train", "validation" or "test") of the rows `cfg` describes, as a datasets.Dataset."""
    import datasets

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cfg.validate()
    if split == "validation" and cfg.n_validation == 0:
        raise ValueError("this run has no validation split: set data.n_validation > 0")
    source = source_for(cfg.task)
    if cfg.source == "generate":
        stream = (lambda name: {"stream": name}) if source.streams else (lambda name: {})
        try:
            held = source.generate(cfg.n_test + cfg.n_validation, seed=2 * cfg.seed + 1, **cfg.generator,
                                   **stream("held_out"))
        except ValueError as error:
            raise ValueError(f"data: n_test + n_validation = {cfg.n_test + cfg.n_validation} held-out problems do not "
                             f"fit data.generator {cfg.generator}: {error}") from None
        if split != "train":
            return datasets.Dataset.from_list(held[: cfg.n_test] if split == "test" else held[cfg.n_test :])
        held_out = {source.key(row) for row in held}
        want = cfg.n_train if cfg.n_train is not None else 20_000
        try:
            pool = source.generate(want + len(held), seed=2 * cfg.seed, **cfg.generator, **stream("train"))
        except ValueError as error:
            raise ValueError(f"data: n_train = {want} training problems besides the {len(held)} held out do not fit "
                             f"data.generator {cfg.generator} ({error}): lower data.n_train or widen the ranges") from None
        train = [row for row in pool if source.key(row) not in held_out][:want]
        return datasets.Dataset.from_list(train)
    if cfg.source == "hub":
        if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
            raise ValueError(f"source='hub' needs internet to download {source.hub_id}, but HF offline mode is set")
        full = _project(load_hub(source.hub_id), source.columns, source.hub_id)
    else:
        full = _project(_read_file(cfg.source), source.columns, cfg.source)
    return split_rows(full.shuffle(seed=cfg.seed), cfg, source.key, split, origin=cfg.source)


def check_splits(cfg: DataConfig) -> None:
    """Make every split of generated rows once (seconds, offline), so that sizes the generator's ranges cannot
    supply stop a run before its first expensive stage rather than at the stage that first reads the split.
    Rows from a file or the hub are checked where they load."""
    if cfg.source != "generate":
        return
    for split in SPLITS:
        if split != "validation" or cfg.n_validation:
            load_split(cfg, split)


def split_rows(full, cfg: DataConfig, key: Callable[[dict], Any], split: str, origin: str = "the rows"):
    """The `split` of an already shuffled dataset, de-duplicated across splits by problem `key`."""
    if len(full) <= cfg.n_test + cfg.n_validation:
        raise ValueError(f"{origin} has {len(full)} rows, not more than n_test + n_validation = "
                         f"{cfg.n_test + cfg.n_validation}")
    test = full.select(range(cfg.n_test))
    if split == "test":
        return test
    seen = {key(row) for row in test}
    keys = [key(row) for row in full.select(range(cfg.n_test, len(full)))]
    validation, train = [], []
    for offset, k in enumerate(keys):
        if k in seen:
            continue  # a duplicate of a held-out problem (or of an earlier validation row)
        if len(validation) < cfg.n_validation:
            validation.append(cfg.n_test + offset)
            seen.add(k)
        elif cfg.n_train is None or len(train) < cfg.n_train:
            train.append(cfg.n_test + offset)
    if len(validation) < cfg.n_validation:
        raise ValueError(f"{origin} has only {len(validation)} distinct problems outside the test split for "
                         f"n_validation = {cfg.n_validation}")
    return full.select(validation if split == "validation" else train)
