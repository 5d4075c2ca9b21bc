"""The function-calling verifier against hand-written cases, and properties over arbitrary text."""

import hashlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r3kit.tasks import get_task

TASK = get_task("function_calling")
TOOLS = json.dumps([{"name": "get_weather", "description": "", "parameters": {}},
                    {"name": "convert_currency", "description": "", "parameters": {}}])
GOLD = [{"name": "get_weather", "arguments": {"location": "Paris", "days": 3}},
        {"name": "convert_currency", "arguments": {"amount": 10.5, "from": "USD", "to": "EUR", "round": True}}]
EX = {"query": "weather and money", "tools": TOOLS, "answers": json.dumps(GOLD)}


def check(text, example=EX):
    return TASK.verify(text, example)


@pytest.mark.parametrize(
    "completion",
    [
        json.dumps(GOLD),
        f"<tool_call>{json.dumps(GOLD)}</tool_call>",
        f"<tool_call>{json.dumps(GOLD[0])}</tool_call>\n<tool_call>{json.dumps(GOLD[1])}</tool_call>",
        f"Here you go:\n```json\n{json.dumps(GOLD)}\n```",
        f"```\n{json.dumps(GOLD)}\n```",
        json.dumps(list(reversed(GOLD))),  # order of calls irrelevant
        json.dumps([{"name": "convert_currency", "arguments": {"to": "EUR", "round": True, "from": "USD", "amount": 10.50}},
                    {"arguments": {"days": 3.0, "location": "Paris"}, "name": "get_weather"}]),  # key order, 3 == 3.0
        json.dumps([{"name": "get_weather", "arguments": json.dumps(GOLD[0]["arguments"])}, GOLD[1]]),  # args as string
        json.dumps([{**GOLD[0], "id": "call_1"}, GOLD[1]]),  # extra keys ignored
        f"<think>maybe [1,2]</think><tool_call>{json.dumps(GOLD)}</tool_call>",
    ],
)
def test_correct_calls_pass(completion):
    assert check(completion).ok, check(completion)


def test_single_object_answer():
    one = {"query": "q", "tools": TOOLS, "answers": json.dumps([GOLD[0]])}
    assert check(json.dumps(GOLD[0]), one).ok
    assert check(f"<tool_call>{json.dumps(GOLD[0])}</tool_call>", one).ok


@pytest.mark.parametrize(
    ("completion", "reason_part"),
    [
        (json.dumps([GOLD[0]]), "missing call(s) convert_currency"),
        (json.dumps(GOLD + [GOLD[0]]), "unexpected call(s) get_weather"),  # duplicates count
        (json.dumps([GOLD[0], {**GOLD[1], "name": "convert"}]), "missing call(s) convert_currency; unexpected call(s) convert"),
        (json.dumps([GOLD[0], {"name": "convert_currency", "arguments": {**GOLD[1]["arguments"], "round": 1}}]),
         "wrong arguments for convert_currency (wrong value round)"),  # true is not 1
        (json.dumps([GOLD[0], {"name": "convert_currency", "arguments": {**GOLD[1]["arguments"], "fee": 1}}]),
         "wrong arguments for convert_currency (unexpected fee)"),
        (json.dumps([{"name": "get_weather", "arguments": {"location": "Paris"}}, GOLD[1]]),
         "wrong arguments for get_weather (missing days)"),
        (json.dumps([GOLD[0], {"name": "convert_currency", "arguments": {**GOLD[1]["arguments"], "amount": "10.5"}}]),
         "wrong arguments for convert_currency (wrong value amount)"),
        (json.dumps([{"name": "get_weather", "arguments": {"location": "Paris"}}, GOLD[1]]), "wrong arguments for get_weather"),
        (json.dumps([{"name": "get_weather", "arguments": {"location": "Paris", "days": 3, "x": None}}, GOLD[1]]), "wrong arguments"),
        (json.dumps([{"name": "get_weather", "arguments": 5}, GOLD[1]]), "must be an object"),
        ("[{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"", "malformed JSON"),
        ("", "no function call found"),
        ("I cannot help with that.", "malformed JSON"),
        ("[1, 2, 3]", "a call must be an object"),
        ('[{"arguments": {}}]', "no string `name`"),
        ('[{"name": "get_weather", "arguments": [1]}]', "must be an object"),
        ('[{"name": "get_weather", "arguments": "not json"}]', "malformed JSON"),
        ('[{"name": "get_weather", "arguments": {"x": NaN}}]', "NaN is not valid JSON"),
        ("[" * 100_001, "longer than"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"name": "f", "arguments": ' + '{"a":' * 40 + "1" + "}" * 41, "nested deeper than 32"),
        ("<tool_call>not json</tool_call>", "malformed JSON"),
    ],
)
def test_wrong_calls_fail_with_reason(completion, reason_part):
    result = check(completion)
    assert not result.ok
    assert reason_part in result.reason, result.reason


def test_true_is_not_one_and_order_inside_lists_matters():
    example = {"query": "q", "tools": TOOLS, "answers": json.dumps([{"name": "f", "arguments": {"a": [1, 2], "b": True}}])}
    assert TASK.verify('[{"name": "f", "arguments": {"b": true, "a": [1.0, 2]}}]', example).ok
    assert not TASK.verify('[{"name": "f", "arguments": {"b": 1, "a": [1, 2]}}]', example).ok
    assert not TASK.verify('[{"name": "f", "arguments": {"b": true, "a": [2, 1]}}]', example).ok


def test_bad_examples_are_named():
    with pytest.raises(ValueError, match="answers"):
        TASK.validate_example({"query": "q", "tools": TOOLS, "answers": "not json"})
    with pytest.raises(ValueError, match="tools"):
        TASK.validate_example({"query": "q", "tools": "{", "answers": "[]"})
    with pytest.raises(ValueError, match="missing column"):
        TASK.validate_example({"query": "q"})


def test_prompt_contains_tools_and_query():
    messages = TASK.first_messages(EX)
    assert messages[0]["role"] == "system" and "get_weather" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "weather and money"}
    assert TASK.difficulty(EX) == "2 calls"


@given(st.text(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_verifier_never_raises_on_arbitrary_text(text):
    for completion in (text, f"<tool_call>{text}</tool_call>", f"```json\n{text}\n```"):
        start = time.perf_counter()
        result = check(completion)
        assert isinstance(result.ok, bool) and isinstance(result.reason, str)
        assert time.perf_counter() - start < 0.05


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_verifier_never_raises_on_arbitrary_json(value):
    for payload in (value, [value], {"name": "get_weather", "arguments": value}, [{"name": "f", "arguments": value}]):
        result = check(json.dumps(payload))
        assert isinstance(result.ok, bool)


def test_generator_rows_offer_the_asked_number_of_unneeded_tools():
    from r3kit.data import function_calling as fc

    def unneeded(rows):
        return {len(json.loads(r["tools"])) - len({c["name"] for c in json.loads(r["answers"])}) for r in rows}

    assert unneeded(fc.generate(60, seed=3, max_calls=2, max_distractors=3)) == {0, 1, 2, 3}
    assert unneeded(fc.generate(60, seed=3, max_calls=2, min_distractors=2, max_distractors=3)) == {2, 3}
    # the default (min_distractors=0) draws exactly the rows it drew before the option existed (hash taken then)
    rows = json.dumps(fc.generate(20, seed=5, max_distractors=2)).encode()
    assert hashlib.sha1(rows).hexdigest() == "bf07a17107aa88e2976cad5b552f26068b5b1380"
    for bad in ({"min_distractors": 3, "max_distractors": 2}, {"min_distractors": -1}, {"min_calls": 0}):
        with pytest.raises(ValueError, match="min_distractors <= max_distractors"):
            fc.generate(5, **bad)
