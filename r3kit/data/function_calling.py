"""Function-calling rows in xLAM format: the hub dataset, or rows generated offline from tool_library.

Generator, per row: choose 1-3 calls (the same tool may be called twice with different arguments, as
xLAM's parallel calls are), sample each call's request and gold arguments from its tool, add 0-3
distractor tools the query does not need, shuffle the offered tools, and join the requests into one
query. Columns are exactly the hub's: `query`, `tools` (JSON string), `answers` (JSON string).
With `hold_out_values`, load_split generates its test and validation rows with the held-out third of the
copied argument values (cities, tickers, emails, ...; see tool_library.values_for) and its training rows
with the rest, so no held-out row shares such a value with a training row (`stream` says which).
"""

from __future__ import annotations

import json
import random

from r3kit.data.tool_library import STREAMS, TOOLS, values_for

HUB_ID = "Salesforce/xlam-function-calling-60k"
COLUMNS = ("query", "tools", "answers")

_JOINERS = [" and ", ". Also, ", "; then ", ", and also "]


def _one_row(rng: random.Random, max_calls: int, max_distractors: int, values: dict, min_calls: int = 1,
             min_distractors: int = 0) -> dict:
    n_calls = rng.randint(min_calls, max_calls)
    called = [rng.choice(TOOLS) for _ in range(n_calls)]
    requests, answers = [], []
    for tool in called:
        text, arguments = tool.sample(rng, values)
        requests.append(text)
        answers.append({"name": tool.name, "arguments": arguments})
    needed = {tool.name for tool in called}
    spare = [tool for tool in TOOLS if tool.name not in needed]
    extra = rng.randint(min(min_distractors, len(spare)), min(max_distractors, len(spare)))
    offered = list({tool.name: tool for tool in called}.values()) + rng.sample(spare, extra)
    rng.shuffle(offered)
    query = requests[0]
    for text in requests[1:]:
        query += rng.choice(_JOINERS) + text
    query = query[0].upper() + query[1:] + rng.choice(["?", ".", ""])
    return {
        "query": query,
        "tools": json.dumps([tool.schema() for tool in offered]),
        "answers": json.dumps(answers),
    }


def generate(n: int, seed: int = 0, max_calls: int = 3, max_distractors: int = 3, hold_out_values: bool = False,
             stream: str = "all", min_calls: int = 1, min_distractors: int = 0) -> list[dict]:
    """`n` distinct rows, deterministic under `seed`; with `hold_out_values`, drawn from `stream`'s values; each
    row offers between min_distractors and max_distractors tools its query does not need."""
    if not 1 <= min_calls <= max_calls or not 0 <= min_distractors <= max_distractors:
        raise ValueError(f"need 1 <= min_calls <= max_calls and 0 <= min_distractors <= max_distractors, got "
                         f"{min_calls}, {max_calls}, {min_distractors}, {max_distractors}")
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    values = values_for(stream if hold_out_values else "all")
    rng = random.Random(seed)
    rows, seen = [], set()
    tries = 0
    while len(rows) < n:
        tries += 1
        if tries > 20 * n + 1000:
            raise ValueError(f"could not generate {n} distinct rows (got {len(rows)})")
        row = _one_row(rng, max_calls, max_distractors, values, min_calls, min_distractors)
        if key(row) not in seen:
            seen.add(key(row))
            rows.append(row)
    return rows


def key(example: dict) -> tuple:
    return (example["query"], example["answers"])
