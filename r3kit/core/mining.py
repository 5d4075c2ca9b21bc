"""Failure mining: the dataset R3 trains on is made of problems the model gets wrong.

For each training problem, sample `k` first attempts (the paper sampled up to 64) and verify them.
Keep the problem if `keep == "any"` and at least one attempt failed, or if `keep == "all"` and every
attempt failed (the paper's rule is unknown, hence the parameter). With each kept problem, keep one
failed attempt (the first that failed), so all G reflections of a GRPO group answer the same failure.

Problems are processed in chunks of `chunk_size`; each finished chunk is written atomically to
chunks/chunk-NNNNNN.jsonl before the next starts. A killed run, started again with the same arguments,
skips finished chunks and redoes only the unfinished one: nothing finished is lost or mined twice.
At the end the kept rows become a `datasets` dataset on disk (dataset/) with manifest.json beside it.
Under a launcher every rank runs this loop and generates its share of each chunk's attempts (the
generator splits each call; distributed.py); the main process alone writes, the others wait for it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from r3kit.infra.distributed import barrier, is_main
from r3kit.infra.io import read_json, read_jsonl, write_json, write_jsonl
from r3kit.infra.notebook import progress as tqdm
from r3kit.models.generation import Sampling, make_generator


@dataclass
class MiningConfig:
    k: int = 8
    keep: str = "any"
    n_tasks: int | None = None  # None: every row given
    attempt_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64
    chunk_size: int = 256

    def validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"k (attempts per problem) must be >= 1, got {self.k}")
        if self.keep not in ("any", "all"):
            raise ValueError(f"keep must be 'any' or 'all', got {self.keep!r}")
        if self.k > 1 and self.temperature == 0:
            raise ValueError("k > 1 with temperature 0 samples the same greedy attempt k times; set temperature > 0")
        if self.chunk_size < 1 or self.batch_size < 1:
            raise ValueError(f"chunk_size and batch_size must be >= 1, got {self.chunk_size}, {self.batch_size}")
        if self.n_tasks is not None and self.n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1 or None, got {self.n_tasks}")
        Sampling(self.attempt_tokens, self.temperature, self.top_p).validate()


def _fingerprint(cfg: MiningConfig, task_name: str, model_name: str, rows: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps([asdict(cfg), task_name, model_name, rows[:50], len(rows)], default=str).encode())
    return digest.hexdigest()[:16]


def mine_chunk(generator, task, rows: list[dict], start: int, cfg: MiningConfig, seed: int) -> tuple[list[dict], dict]:
    """k attempts for each row (one batched generation), verified; returns kept rows and counts."""
    conversations = [task.first_messages(row) for row in rows for _ in range(cfg.k)]
    outs = generator.generate(conversations, Sampling(cfg.attempt_tokens, cfg.temperature, cfg.top_p, seed))
    kept, passed = [], 0
    for i, row in enumerate(rows):
        attempts = outs[i * cfg.k : (i + 1) * cfg.k]
        verdicts = [task.verify(a.text, row) for a in attempts]
        failures = [(a, v) for a, v in zip(attempts, verdicts) if not v.ok]
        passed += cfg.k - len(failures)
        if failures and (cfg.keep == "any" or len(failures) == cfg.k):
            attempt, verdict = failures[0]
            kept.append({**row, "failed_attempt": attempt.text, "failed_reason": verdict.reason,
                         "failures": len(failures), "k": cfg.k, "source_index": start + i})
    return kept, {"problems": len(rows), "attempts": len(rows) * cfg.k, "passed": passed, "kept": len(kept)}


def mine_failures(model, tokenizer, task, examples, cfg: MiningConfig, out_dir: str | Path, model_name: str = "",
                  generator=None):
    """Mine `examples` into out_dir (resumable); returns the failure dataset (datasets.Dataset).
    `generator` replaces the default batched generator of `model` (any object with .generate and .stats)."""
    import datasets

    cfg.validate()
    rows = [dict(e) for e in examples]
    rows = rows if cfg.n_tasks is None else rows[: cfg.n_tasks]
    if not rows:
        raise ValueError("no problems to mine: the training split is empty")
    for row in rows:
        task.validate_example(row)
    out_dir = Path(out_dir)
    chunk_dir = out_dir / "chunks"
    fingerprint = _fingerprint(cfg, task.name, model_name, rows)
    state_path = out_dir / "mining_state.json"
    if state_path.exists() and read_json(state_path)["fingerprint"] != fingerprint:
        raise ValueError(f"{out_dir} holds a mining run with other parameters, model or data; use a new folder or delete it")
    write_json(state_path, {"fingerprint": fingerprint})
    generator = generator or make_generator(model, tokenizer, batch_size=cfg.batch_size, split=True)
    starts = range(0, len(rows), cfg.chunk_size)
    start_time, resumed = time.perf_counter(), 0
    for number, start in enumerate(tqdm(starts, desc="mining", unit="chunk", disable=not is_main())):
        path = chunk_dir / f"chunk-{number:06d}.jsonl"
        if path.exists():
            resumed += 1
            continue
        kept, counts = mine_chunk(generator, task, rows[start : start + cfg.chunk_size], start, cfg, cfg.seed + number)
        write_jsonl(path, [{"counts": counts}, *kept])
    barrier()  # every chunk written before any rank reads them back
    kept_rows, totals = [], {"problems": 0, "attempts": 0, "passed": 0, "kept": 0}
    for number in range(len(starts)):
        header, *kept = read_jsonl(chunk_dir / f"chunk-{number:06d}.jsonl")
        kept_rows.extend(kept)
        for key in totals:
            totals[key] += header["counts"][key]
    dataset = datasets.Dataset.from_list(kept_rows) if kept_rows else datasets.Dataset.from_dict({})
    if is_main():
        dataset.save_to_disk(str(out_dir / "dataset"))
    manifest: dict[str, Any] = {
        "model": model_name, "task": task.name, "parameters": asdict(cfg), "counts": totals,
        "attempt_accuracy": totals["passed"] / totals["attempts"],
        "chunks": len(starts), "chunks_resumed": resumed, "wall_seconds": time.perf_counter() - start_time,
        "tokens_per_second": generator.stats.tokens_per_second,
    }
    write_json(out_dir / "manifest.json", manifest)
    barrier()
    return dataset


def load_failures(out_dir: str | Path):
    """The failure dataset a finished mining run saved in out_dir."""
    import datasets

    path = Path(out_dir) / "dataset"
    if not path.exists():
        raise ValueError(f"no failure dataset at {path}: run mining first")
    return datasets.load_from_disk(str(path))
