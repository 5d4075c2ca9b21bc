"""Countdown rows: the hub dataset, or solvable problems generated offline, both as {"target", "nums"}.

Generator: draw how many numbers and the numbers uniformly from the configured ranges, compute every
value they can reach (numpy over subset splits), and draw the target uniformly among the reachable
integers in the target range (numbers that reach none are redrawn). The task's solver
(r3kit.tasks.countdown.solve) then confirms each problem, so every generated row is solvable.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from r3kit.tasks.countdown import format_tree, solve  # noqa: F401 (the solver lives with the task)

HUB_ID = "Jiayi-Pan/Countdown-Tasks-3to4"
COLUMNS = ("target", "nums")

def generate(
    n: int,
    seed: int = 0,
    num_counts: tuple[int, ...] = (3, 4),
    min_num: int = 1,
    max_num: int = 99,
    min_target: int = 1,
    max_target: int = 100,
) -> list[dict]:
    """`n` distinct solvable problems, deterministic under `seed`."""
    return list(iter_problems(n, seed, num_counts, min_num, max_num, min_target, max_target))


@lru_cache(maxsize=65536)
def _reach(values: tuple[int, ...]) -> np.ndarray:
    """Every value an expression over all of `values` can take (floats, rounded, de-duplicated)."""
    if len(values) == 1:
        return np.array([float(values[0])])
    found = []
    rest_indices = range(1, len(values))
    for mask in range(1 << (len(values) - 1)):
        left = (values[0],) + tuple(values[i] for i in rest_indices if mask >> (i - 1) & 1)
        right = tuple(values[i] for i in rest_indices if not mask >> (i - 1) & 1)
        if not right:
            continue
        a, b = _reach(tuple(sorted(left)))[:, None], _reach(tuple(sorted(right)))[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            found += [a + b, a - b, b - a, a * b, np.where(b != 0, a / b, np.nan), np.where(a != 0, b / a, np.nan)]
    out = np.concatenate([f.ravel() for f in found])
    return np.unique(np.round(out[np.isfinite(out)], 9))


def reachable_targets(nums: list[int], low: int, high: int) -> list[int]:
    """The integers in [low, high] that some equation over all of `nums` reaches."""
    values = _reach(tuple(sorted(nums)))
    ints = values[(values >= low) & (values <= high) & (np.abs(values - np.round(values)) < 1e-6)]
    return sorted({int(round(v)) for v in ints})


def iter_problems(
    n: int | None,
    seed: int = 0,
    num_counts: tuple[int, ...] = (3, 4),
    min_num: int = 1,
    max_num: int = 99,
    min_target: int = 1,
    max_target: int = 100,
    distinct: bool = True,
) -> Iterator[dict]:
    """Solvable problems, deterministic under `seed`; with distinct=False a problem may come again
    (an endless training stream over a finite space of problems)."""
    if not num_counts or min(num_counts) < 2 or max(num_counts) > 5:
        raise ValueError(f"num_counts must be numbers of operands between 2 and 5, got {num_counts}")
    if min_num > max_num or min_target > max_target or min_num < 0:
        raise ValueError(f"empty range: nums [{min_num}, {max_num}], target [{min_target}, {max_target}]")
    rng = random.Random(seed)
    seen: set[tuple] = set()
    made = tries = 0
    while n is None or made < n:
        tries += 1
        if n is not None and tries > 50 * n + 10_000:
            raise ValueError(f"could not find {n} distinct solvable problems in these ranges (found {made})")
        count = rng.choice(list(num_counts))
        nums = [rng.randint(min_num, max_num) for _ in range(count)]
        targets = reachable_targets(nums, min_target, max_target)
        if not targets:
            continue
        target = rng.choice(targets)
        key = (target, tuple(sorted(nums)))
        if (distinct and key in seen) or solve(nums, target) is None:
            continue
        if distinct:
            seen.add(key)
        made += 1
        yield {"target": target, "nums": nums}


def key(example: dict) -> tuple:
    """Identity of a problem for de-duplication across splits (the order of numbers does not matter)."""
    return (example["target"], tuple(sorted(example["nums"])))
