"""The function-calling student's training conversations (student/countdown.py trains it, as it trains Countdown's).

Rows are the offline xLAM-format rows of the generator's training stream (data/function_calling.py with
`hold_out_values`: every test and validation row uses argument values, such as cities, tickers or emails,
that no training row uses; the tools and numbers are shared). The prompt is the compact style's: the
offered tools on one line ("get_weather(location:str,unit:str?) | list_primes(limit:int)"), then the query.
An answer is the gold calls as compact JSON, which the kit's own verifier reads as it is:
    [{"name":"get_weather","arguments":{"location":"Lima"}}]
A failed attempt is the gold answer with one fault, of the kinds the verifier's reasons name:
    wrong tool     another offered tool's name        wrong value   one argument's value changed
    missing arg    an argument left out               extra arg     an optional argument nobody asked for
    missing call   one call of several left out       extra call    a call repeated with another value
    bad json       the answer cut short
A reflection (style "check") names the attempt's fault and what fixes it, and nothing more:
    "wrong tool get_local_time, use get_weather"     "wrong location: location="Lima""
    "unit missing: unit="celsius""                   "max_results not asked"
    "a call missing: list_primes(limit=50)"          "extra call get_weather(location="Oslo")"
    "bad json"
and the retry writes every call as JSON, the attempt with the fix applied. So a reflection carries what
binary feedback does not (which call failed, and how), it is not a fresh solution, and writing a good
one is a skill of its own. Style "fresh" reflects with every call written out (brief), no check.
The kinds of conversation and their mix are student/countdown.py's (solve, reflect, no_reflect, generic), plus
"extract" (student.mix_extract, and the first student.extract_steps steps): the query alone, answered with
its calls' values in order, strings unquoted ("NBAK 30 105.6 1.57"): no tool line, no JSON, about a third
of a solve conversation's length. On full conversations the student learns to copy values only after
about 1,200 steps of 32 (hidden 192; before that it writes the calls' shape and the right tools and invents
every value): 2,000 steps gave 24.5% first try on validation, 3,000 gave 100%
(benchmarks/results/fc_student_steps_h200.json), at about 5 s a step on 2 CPU cores. Extract conversations
teach the copying about 7 times cheaper a step: 3,000 of them (0.7 s each) copied 48% of validation rows'
values exactly, and a few hundred solve steps after them made 10-88% first try
(benchmarks/fc_copy_probe.py; docs/experiments/function-calling.md).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from r3kit.data.function_calling import generate, key
from r3kit.data.tool_library import _SYLLABLES, LANGS, TOOLS, VALUES
from r3kit.tasks import get_task

# JSON scaffolding, and the syllables made-up values are built of (data/tool_library.py), as single tokens:
# shorter sequences, and a value is copied in two or three tokens rather than five to nine.
TOKENS = ('{"name":"', '","arguments":{', *_SYLLABLES, *(s.capitalize() for s in _SYLLABLES))
MAX_POSITIONS = 1024
FAULTS = ("wrong tool", "wrong value", "missing arg", "extra arg", "missing call", "extra call", "bad json")
_LIBRARY = {tool.name: tool for tool in TOOLS}
_POOLS = [*VALUES.values(), list(LANGS.values()), ["celsius", "fahrenheit"]]


def dump(calls: list[dict]) -> str:
    return json.dumps(calls, separators=(",", ":"))


def values(calls: list[dict]) -> str:
    """The calls' argument values in order, strings unquoted: "NBAK 30 105.6 1.57"."""
    return " ".join(json.dumps(v, separators=(",", ":")).strip('"') for c in calls for v in c["arguments"].values())


def brief_call(call: dict) -> str:
    """get_weather(location="Lima",unit="celsius")"""
    arguments = ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in call["arguments"].items())
    return f"{call['name']}({arguments})"


def _other_number(value, rng: random.Random):
    """The number with one digit changed (a copy slip), keeping its type."""
    text = json.dumps(value)
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    for _ in range(10):
        i = rng.choice(digits)
        changed = text[:i] + rng.choice([d for d in "0123456789" if d != text[i]]) + text[i + 1:]
        try:
            new = type(value)(json.loads(changed))
        except ValueError:
            continue
        if new != value:
            return new
    return value + 1


def other_value(value, rng: random.Random):
    """A plausible wrong value of the same kind: another value of its pool (or, for a made-up value, one
    character dropped or changed), a changed digit, a list with one element changed or dropped, the other
    boolean."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return _other_number(value, rng)
    if isinstance(value, list):
        if len(value) > 1 and rng.random() < 0.5:
            dropped = rng.randrange(len(value))
            return [v for i, v in enumerate(value) if i != dropped]
        changed = list(value)
        i = rng.randrange(len(changed))
        changed[i] = other_value(changed[i], rng)
        return changed
    if isinstance(value, str):
        for pool in _POOLS:
            if value in pool:
                return rng.choice([v for v in pool if v != value])
        i = rng.randrange(len(value)) if value else 0
        if len(value) > 1 and rng.random() < 0.5:  # a copy slip: a character dropped, or changed
            return value[:i] + value[i + 1:]
        return value[:i] + rng.choice([c for c in "aeioustnr" if value[i:i + 1] != c]) + value[i + 1:]
    return value


def _optional_unasked(tool: dict, call: dict) -> list[str]:
    params = tool.get("parameters", {}) if isinstance(tool, dict) else {}
    return [k for k, spec in params.items() if k not in call["arguments"] and isinstance(spec, dict)
            and "default" in spec]


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def fault(row: dict, rng: random.Random) -> tuple[str, str]:
    """(failed attempt, its check) for a row: the gold answer with one fault, which always fails the verifier,
    and the fault in a few words with what fixes it ("wrong location: location="Lima"")."""
    task = get_task("function_calling")
    calls = json.loads(row["answers"])
    offered = {tool["name"]: tool for tool in json.loads(row["tools"])}
    for _ in range(20):
        kind = rng.choice(FAULTS)
        i = rng.randrange(len(calls))
        call, attempt = calls[i], [dict(c, arguments=dict(c["arguments"])) for c in calls]
        if kind == "wrong tool":
            others = [n for n in offered if n != call["name"]] or [n for n in _LIBRARY if n != call["name"]]
            attempt[i]["name"] = rng.choice(others)
            said = f"wrong tool {attempt[i]['name']}, use {call['name']}"
        elif kind in ("wrong value", "missing arg"):
            if not call["arguments"]:
                continue
            name = rng.choice(list(call["arguments"]))
            if kind == "wrong value":
                attempt[i]["arguments"][name] = other_value(call["arguments"][name], rng)
                said = f"wrong {name}: {name}={_json(call['arguments'][name])}"
            else:
                del attempt[i]["arguments"][name]
                said = f"{name} missing: {name}={_json(call['arguments'][name])}"
        elif kind == "extra arg":
            unasked = _optional_unasked(offered.get(call["name"], {}), call)
            if not unasked:
                continue
            name = rng.choice(unasked)
            attempt[i]["arguments"][name] = offered[call["name"]]["parameters"][name]["default"]
            said = f"{name} not asked"
        elif kind == "missing call":
            if len(calls) < 2:
                continue
            del attempt[i]
            said = f"a call missing: {brief_call(call)}"
        elif kind == "extra call":
            if not call["arguments"]:
                continue
            extra = dict(call, arguments=dict(call["arguments"]))
            name = rng.choice(list(extra["arguments"]))
            extra["arguments"][name] = other_value(extra["arguments"][name], rng)
            attempt.insert(i + 1, extra)
            said = f"extra call {brief_call(extra)}"
        else:  # bad json
            text = dump(calls)
            cut = rng.randint(len(text) // 3, len(text) - 1)
            if not task.verify(text[:cut], row).ok:
                return text[:cut], "bad json"
            continue
        text = dump(attempt)
        if not task.verify(text, row).ok:
            return text, said
    return dump(calls)[:-1], "bad json"  # a fault every row admits: the JSON cut short


def reflection(check: str, calls: list[dict], style: str) -> str:
    """"check": the attempt's fault and its fix (fault()); "fresh": every call written out, no check."""
    return check if style == "check" else " ".join(brief_call(c) for c in calls)


def conversation(row: dict, kind: str, rng: random.Random, style: str = "check") -> list[tuple[str, str, bool]]:
    """(role, content, trained) turns of one training conversation of `kind` (see student/countdown.py)."""
    task = get_task("function_calling", style="compact")
    p = task.prompts
    calls = json.loads(row["answers"])
    answer = dump(calls)
    if kind == "extract":  # the query alone -> its calls' values: copying is most of what an answer does
        return [("user", row["query"], False), ("assistant", values(calls), True)]
    turns = [("user", task.first_messages(row)[-1]["content"], False)]
    if kind == "solve":
        return turns + [("assistant", answer, True)]
    failed, check = fault(row, rng)
    turns.append(("assistant", failed, False))
    if kind == "no_reflect":
        return turns + [("user", p.retry_without_reflection, False), ("assistant", answer, True)]
    spoken = (reflection(check, calls, style), True) if kind == "reflect" else (p.generic_reflection, False)
    return turns + [("user", p.reflection_request, False), ("assistant", *spoken),
                    ("user", p.retry_request, False), ("assistant", answer, True)]


def training_rows(seed: int, exclude: set, generator: dict, chunk: int = 4096) -> Iterator[dict]:
    """The endless stream of training rows (the generator's "train" stream, chunk by chunk under seeds
    derived from `seed`), never one whose key is in `exclude`."""
    settings = {k: v for k, v in generator.items() if k != "stream"}
    for n in range(1 << 30):
        for row in generate(chunk, seed=seed * 1_000_003 + 7919 + n, stream="train", **settings):
            if key(row) not in exclude:
                yield row
