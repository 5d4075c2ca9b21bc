"""Function calling (APIGen / xLAM): answer a query with the right call(s) to the given tools.

Rows have the columns of `Salesforce/xlam-function-calling-60k`: `query` (text), `tools` (JSON string:
list of tool schemas) and `answers` (JSON string: list of {"name", "arguments"}).

Verifier:
  1. locate the calls: every <tool_call>...</tool_call> block if there is one (their calls are joined);
     else the last ```json (or bare ```) fence; else the whole completion. Text before a final </think>
     is ignored. Each piece must be a JSON object {"name", "arguments"} or a list of them.
  2. `arguments` must be an object (a JSON string holding an object is accepted, as OpenAI-style APIs
     send it); other keys of a call (an "id", say) are ignored.
  3. correct = the same multiset of calls as the gold answer: names equal, arguments equal as JSON
     values (1 == 1.0, key order irrelevant, true != 1), call order irrelevant, duplicates counted.
Anything malformed or hostile (not JSON, NaN, nesting deeper than 32, over 100,000 characters, wrong
types) is a failed verdict with a reason, never an exception.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from typing import Any

from r3kit.tasks.base import Task, Verdict

MAX_CHARS = 100_000
MAX_DEPTH = 32

_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


class _Bad(Exception):
    """Internal: the completion's calls are malformed; the message is the verdict's reason."""


def _reject_constant(name: str) -> Any:
    raise _Bad(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except _Bad:
        raise
    except RecursionError:
        raise _Bad("JSON nested too deeply") from None
    except ValueError as error:
        raise _Bad(f"malformed JSON ({error.msg} at position {error.pos})") from None


def _canonical(value: Any, depth: int = 0) -> Any:
    """A hashable form in which equal JSON values are equal: 1 == 1.0, key order ignored, True != 1."""
    if depth > MAX_DEPTH:
        raise _Bad(f"arguments nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, str):
        return ("scalar", value)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", Fraction(value))
    if isinstance(value, list):
        return ("list", tuple(_canonical(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(k), _canonical(v, depth + 1)) for k, v in value.items())))
    raise _Bad(f"unsupported value of type {type(value).__name__}")


def _normalise_calls(parsed: Any) -> list[tuple[str, Any]]:
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            raise _Bad(f"a call must be an object, got {type(item).__name__}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _Bad("a call has no string `name`")
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            if len(arguments) > MAX_CHARS:
                raise _Bad("arguments string too long")
            arguments = _loads(arguments) if arguments.strip() else {}
        if not isinstance(arguments, dict):
            raise _Bad(f"`arguments` of {name!r} must be an object, got {type(arguments).__name__}")
        calls.append((name, _canonical(arguments)))
    return calls


def extract_calls(completion: str) -> list[tuple[str, Any]]:
    """The calls in a completion, canonicalised; raises _Bad with the reason."""
    if len(completion) > MAX_CHARS:
        raise _Bad(f"completion longer than {MAX_CHARS} characters")
    think_end = completion.rfind("</think>")
    text = completion[think_end + len("</think>") :] if think_end >= 0 else completion
    blocks = _TOOL_CALL.findall(text)
    if blocks:
        calls = []
        for block in blocks:
            calls.extend(_normalise_calls(_loads(block.strip())))
        return calls
    fences = _FENCE.findall(text)
    body = fences[-1] if fences else text
    if not body.strip():
        raise _Bad("no function call found")
    return _normalise_calls(_loads(body.strip()))


@lru_cache(maxsize=4096)
def _gold_calls(answers: str) -> tuple[tuple[str, Any], ...]:
    try:
        parsed = json.loads(answers) if isinstance(answers, str) else answers
        return tuple(_normalise_calls(parsed))
    except (_Bad, ValueError, RecursionError) as error:
        raise ValueError(f"function_calling example has unusable `answers` ({error}): {answers[:200]!r}") from None


def _argument_detail(gold: Counter, got: Counter) -> str:
    """" (missing unit; wrong value location)": how the unmatched calls' arguments differ, pairing each gold
    call with a got call of the same name (a sorted, hence deterministic, pairing)."""
    unmatched = sorted(got.elements(), key=repr)
    found = set()
    for name, arguments in sorted(gold.elements(), key=repr):
        partner = next((c for c in unmatched if c[0] == name), None)
        if partner is None:
            continue
        unmatched.remove(partner)
        want = dict(arguments[1]) if arguments[0] == "object" else {}
        have = dict(partner[1][1]) if partner[1][0] == "object" else {}
        found |= {f"missing {k}" for k in want.keys() - have.keys()}
        found |= {f"unexpected {k}" for k in have.keys() - want.keys()}
        found |= {f"wrong value {k}" for k in want.keys() & have.keys() if want[k] != have[k]}
    return f" ({'; '.join(sorted(found))})" if found else ""


def _describe(calls: Counter) -> str:
    names = sorted(name for name, _ in calls.elements())
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _brief_type(spec: Any) -> str:
    kind = str(spec.get("type", "any")) if isinstance(spec, dict) else "any"
    optional = "optional" in kind.lower() or (isinstance(spec, dict) and "default" in spec)
    kind = re.sub(r",?\s*optional", "", kind, flags=re.IGNORECASE).strip().lower() or "any"
    return kind.replace(" ", "") + ("?" if optional else "")


def _schema_type(kind: Any) -> str:
    """A JSON-schema type as one word: "string"; ["string", "null"] -> "string|null"; missing -> "any"."""
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind) or "any"
    return "any" if kind is None else str(kind)


def brief_tools(tools: str) -> str:
    """The offered tools in one short line, for small models: `get_weather(location:str,unit:str?) | ...`
    (`?`: optional, i.e. typed optional or with a default). Tools it cannot read are shown by name only."""
    try:
        parsed = json.loads(tools)
    except ValueError:
        return str(tools)
    parts = []
    for tool in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(tool, dict):
            continue
        try:
            params = tool.get("parameters")
            if isinstance(params, dict) and isinstance(params.get("properties"), dict):  # OpenAI / JSON-schema style
                required = params.get("required")
                required = set(required) if isinstance(required, list) and all(isinstance(r, str) for r in required) else set()
                params = {k: {**v, "type": _schema_type(v.get("type")) + ("" if k in required else ", optional")}
                          if isinstance(v, dict) else v for k, v in params["properties"].items()}
            args = ",".join(f"{k}:{_brief_type(v)}" for k, v in params.items()) if isinstance(params, dict) else ""
        except (TypeError, ValueError, AttributeError):  # a tool this reader cannot parse: its name alone
            args = ""
        parts.append(f"{tool.get('name', '?')}({args})")
    return " | ".join(parts)


class FunctionCallingTask(Task):
    name = "function_calling"
    columns = ("query", "tools", "answers")

    def template_fields(self, example: dict) -> dict[str, Any]:
        """The columns, plus `tools_brief` (brief_tools) for short prompts."""
        return {**super().template_fields(example), "tools_brief": brief_tools(example["tools"])}

    def verify(self, completion: Any, example: dict) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(False, f"completion is {type(completion).__name__}, not text")
        answers = example["answers"]
        gold = Counter(_gold_calls(answers if isinstance(answers, str) else json.dumps(answers)))
        try:
            got = Counter(extract_calls(completion))
        except _Bad as bad:
            return Verdict(False, str(bad))
        except RecursionError:
            return Verdict(False, "JSON nested too deeply")
        if got == gold:
            return Verdict(True, "correct")
        gold_names, got_names = Counter(n for n, _ in gold.elements()), Counter(n for n, _ in got.elements())
        if gold_names == got_names:
            return Verdict(False, "wrong arguments for " + _describe(gold - got) + _argument_detail(gold - got, got - gold))
        missing, extra = gold_names - got_names, got_names - gold_names
        parts = []
        if missing:
            parts.append("missing call(s) " + ", ".join(sorted(missing.elements())))
        if extra:
            parts.append("unexpected call(s) " + ", ".join(sorted(extra.elements())))
        return Verdict(False, "; ".join(parts))

    failure_categories = ("malformed", "wrong tool", "missing call", "extra call", "wrong argument value",
                          "missing argument", "extra argument")

    def reason_category(self, reason: str) -> str:
        """One of failure_categories (or "correct"): a parse failure is "malformed"; as many missing calls as
        unexpected ones is "wrong tool"; wrong arguments are a wrong value if any, else a missing argument,
        else an extra one (the verifier's detail in parentheses)."""
        reason = str(reason)
        if reason == "correct":
            return reason
        if reason.startswith("wrong arguments"):
            detail = reason[reason.find("("):]
            return next((kind for word, kind in (("wrong value", "wrong argument value"), ("missing", "missing argument"),
                                                 ("unexpected", "extra argument")) if word in detail),
                        "wrong argument value")
        counts = dict(re.findall(r"(missing|unexpected) call\(s\) ([^;]*)", reason))
        if counts:
            missing, extra = (len(counts[k].split(", ")) if k in counts else 0 for k in ("missing", "unexpected"))
            return "wrong tool" if missing == extra else "missing call" if missing > extra else "extra call"
        return "malformed"

    def validate_example(self, example: dict) -> None:
        super().validate_example(example)
        for column in ("tools", "answers"):
            if not isinstance(example[column], str):
                raise ValueError(f"function_calling `{column}` must be a JSON string, got {type(example[column]).__name__}")
        try:
            tools = json.loads(example["tools"])
        except ValueError as error:
            raise ValueError(f"function_calling `tools` is not valid JSON: {error}") from None
        if not isinstance(tools, list):
            raise ValueError("function_calling `tools` must be a JSON list of tool schemas")
        _gold_calls(example["answers"])

    def difficulty(self, example: dict) -> str:
        n = len(_gold_calls(example["answers"]))
        return "1 call" if n == 1 else f"{n} calls"
