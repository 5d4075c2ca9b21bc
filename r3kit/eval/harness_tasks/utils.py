"""Functions the harness tasks name with `!function utils.<name>` (lm-eval imports this file by path)."""

from __future__ import annotations

import random
from functools import lru_cache

import datasets

from r3kit.data import function_calling
from r3kit.data.countdown import generate
from r3kit.tasks import get_task

_TASK = get_task("countdown", style="compact")
_CALLS = get_task("function_calling", style="compact")


@lru_cache(maxsize=16)
def _problems(n: int, seed: int, num_counts: tuple[int, ...], min_num: int, max_num: int, min_target: int,
              max_target: int) -> tuple[dict, ...]:
    return tuple(generate(n, seed, num_counts, min_num, max_num, min_target, max_target))


def load(n: int, seed: int, num_counts: list[int], min_num: int, max_num: int, min_target: int, max_target: int,
         **_metadata) -> datasets.DatasetDict:
    """`n` solvable problems from the kit's generator, the same for every call with the same settings."""
    rows = _problems(n, seed, tuple(num_counts), min_num, max_num, min_target, max_target)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([dict(r) for r in rows])})


def _step(nums: list[int], rng: random.Random) -> tuple[str, int]:
    """A first step a worked attempt could take: two of the numbers and + - or * ("49-37=", 12)."""
    a, b = rng.sample(list(nums), 2)
    op = rng.choice("+-*")
    if op == "-" and a < b:
        a, b = b, a
    return f"{a}{op}{b}=", a + b if op == "+" else a - b if op == "-" else a * b


def load_arithmetic(n: int, seed: int, num_counts: list[int], min_num: int, max_num: int, min_target: int,
                    max_target: int, **_metadata) -> datasets.DatasetDict:
    """Per problem, one arithmetic step and four candidate values: the true one and three off by 1 to 3."""
    rng = random.Random(seed)
    rows = []
    for problem in _problems(n, seed, tuple(num_counts), min_num, max_num, min_target, max_target):
        step, value = _step(problem["nums"], rng)
        wrong = rng.sample([v for v in (value - 2, value - 1, value + 1, value + 2, value + 3) if v >= 0], 3)
        values = sorted([value, *wrong])
        rows.append({**problem, "step": step, "choices": [f"{step}{v}" for v in values], "gold": values.index(value)})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _turn(task, doc: dict) -> str:
    """The task turn exactly as r3kit's rollout sends it (compact style, no system turn)."""
    (message,) = task.first_messages(doc)
    return message["content"]


def _accuracy(task, doc: dict, results: list[str]) -> dict[str, float]:
    return {"accuracy": float(task.verify(results[0], doc).ok)}


def doc_to_text(doc: dict) -> str:
    return _turn(_TASK, doc)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return _accuracy(_TASK, doc, results)


def load_calls(n: int, seed: int, min_calls: int, max_calls: int, max_distractors: int, min_distractors: int = 0,
               **_metadata) -> datasets.DatasetDict:
    """`n` function-calling rows from the kit's generator, with the held-out argument values (those the
    function-calling student never trained on), the same for every call with the same settings."""
    rows = function_calling.generate(n, seed, max_calls=max_calls, max_distractors=max_distractors,
                                     hold_out_values=True, stream="held_out", min_calls=min_calls,
                                     min_distractors=min_distractors)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def calls_to_text(doc: dict) -> str:
    return _turn(_CALLS, doc)


def process_calls(doc: dict, results: list[str]) -> dict[str, float]:
    return _accuracy(_CALLS, doc, results)
