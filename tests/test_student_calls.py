"""The function-calling student's data: held-out argument values, brief tools, faults, conversations."""

import json
import random
from collections import Counter

import pytest

from r3kit.data import DataConfig, load_split
from r3kit.data import function_calling as fc
from r3kit.data.tool_library import VALUES, Values, values_for
from r3kit.models.loading import build_char_tokenizer
from r3kit.student.countdown import StudentConfig, make_student
from r3kit.student.function_calling import (
    FAULTS,
    TOKENS,
    brief_call,
    conversation,
    dump,
    fault,
    other_value,
    training_rows,
)
from r3kit.tasks import get_task
from r3kit.tasks.function_calling import brief_tools

TASK = get_task("function_calling")
SHARED = {"target_language", "unit"}  # knowledge the request does not spell out: the same in every stream


def _copied_values(rows) -> set:
    """The string argument values of rows' gold calls that were copied from the request."""
    out = set()
    for row in rows:
        for call in json.loads(row["answers"]):
            for name, value in call["arguments"].items():
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str) and name not in SHARED:
                        out.add(v.removeprefix("About "))
    return out


def test_value_streams_never_share_a_value_and_all_is_the_real_lists():
    train, held, every = Values("train"), Values("held_out"), values_for("all")
    rng = random.Random(0)
    for kind in VALUES:
        a = {train.choice(rng, kind) for _ in range(300)}
        b = {held.choice(rng, kind) for _ in range(300)}
        assert len(a) > 50 and len(b) > 30 and not a & b, kind  # an endless supply, split in two
        assert all(train.owns(v) and not held.owns(v) for v in a)
        assert {every.choice(rng, kind) for _ in range(300)} <= set(VALUES[kind])
    assert len(set(held.sample(rng, "people", 3))) == 3
    with pytest.raises(ValueError, match="stream must be one of"):
        values_for("test")


def test_held_out_rows_share_no_copied_value_with_training_rows():
    cfg = DataConfig(task="function_calling", n_train=600, n_test=150, n_validation=50, seed=2,
                     generator={"hold_out_values": True, "max_calls": 2, "max_distractors": 1})
    train, test, validation = (load_split(cfg, split) for split in ("train", "test", "validation"))
    seen, held = _copied_values(train), _copied_values(test) | _copied_values(validation)
    assert len(seen) > 500 and len(held) > 150 and not seen & held
    assert all(Values("held_out").owns(v) for v in held)
    assert all(len(json.loads(r["answers"])) <= 2 and len(json.loads(r["tools"])) <= 3 for r in test)
    without = DataConfig(task="function_calling", n_train=600, n_test=150, seed=2)  # the real lists, shared
    assert _copied_values(load_split(without, "train")) & _copied_values(load_split(without, "test"))
    with pytest.raises(ValueError, match="must not set `stream`"):
        load_split(DataConfig(task="function_calling", generator={"stream": "train"}), "test")


def test_brief_tools_reads_xlam_and_json_schema_tools_and_never_raises():
    xlam = json.dumps([{"name": "get_weather", "description": "d", "parameters": {
        "location": {"type": "str", "description": "City."}, "unit": {"type": "str, optional", "default": "c"}}},
        {"name": "ping", "parameters": {}}])
    assert brief_tools(xlam) == "get_weather(location:str,unit:str?) | ping()"
    schema = json.dumps([{"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]}}])
    assert brief_tools(schema) == "f(a:integer,b:string?)"
    nullable = json.dumps([{"name": "g", "parameters": {"type": "object", "properties": {
        "a": {"type": ["string", "null"]}, "b": {}}, "required": ["a"]}}])
    assert brief_tools(nullable) == "g(a:string|null,b:any?)"
    for bad in ("not json", "[1, 2]", "{}", '[{"name": "x", "parameters": 3}]', "null",
                '[{"name": "y", "parameters": {"properties": {"a": {"type": {"x": 1}}}, "required": [["a"]]}}]',
                '[{"name": "z", "parameters": {"properties": {"a": {"type": 7}}, "required": 5}}]'):
        assert isinstance(brief_tools(bad), str)
    row = fc.generate(1, seed=4)[0]
    prompt = get_task("function_calling", style="compact").first_messages(row)
    assert prompt == [{"role": "user", "content": f"{brief_tools(row['tools'])}\n{row['query']}"}]


def test_every_fault_fails_the_real_verifier_and_is_named():
    rng = random.Random(0)
    rows = fc.generate(400, seed=1, max_calls=3, max_distractors=2)
    kinds = Counter()
    for row in rows:
        attempt, said = fault(row, rng)
        assert not TASK.verify(attempt, row).ok and TASK.verify(json.dumps(json.loads(row["answers"])), row).ok
        gold = json.loads(row["answers"])
        if ": " in said and not said.startswith("a call"):  # the fix names the gold value
            name, value = said.split(": ", 1)[1].split("=", 1)
            assert any(name in c["arguments"] and json.dumps(c["arguments"][name], separators=(",", ":")) == value
                       for c in gold)
        if said.startswith("a call missing"):
            assert said.split(": ", 1)[1] in [brief_call(c) for c in gold]
        kinds[next(k for k in ("wrong tool", "a call missing", "extra call", "bad json", "not asked", "missing", "wrong")
                   if k in said)] += 1
    assert set(kinds) == {"wrong tool", "a call missing", "extra call", "bad json", "not asked", "missing", "wrong"}
    assert len(FAULTS) == 7


def test_wrong_values_are_plausible_and_different():
    rng = random.Random(3)
    for value in ["Lima", "USD", "fr", "celsius", "x", "Kalomi", 7, 0, 3.25, 1000, True, [1, 2, 3], ["a@b.c"]]:
        for _ in range(20):
            other = other_value(value, rng)
            assert other != value and type(other) is type(value)
    assert other_value("Lima", rng) in VALUES["cities"]


def test_conversations_train_the_reflection_and_the_answer_only():
    rng = random.Random(5)
    row = fc.generate(1, seed=9, max_calls=1)[0]
    gold = json.loads(row["answers"])
    turns = conversation(row, "reflect", rng, style="check")
    roles = [(role, trained) for role, _, trained in turns]
    assert roles == [("user", False), ("assistant", False), ("user", False), ("assistant", True), ("user", False),
                     ("assistant", True)]
    assert turns[2][1] == "wrong. reflect" and turns[4][1] == "retry"
    assert turns[3][1] == fault(row, random.Random(5))[1]  # the check: the fault and its fix
    assert TASK.verify(turns[5][1], row).ok and not TASK.verify(turns[1][1], row).ok
    assert conversation(row, "reflect", rng, style="fresh")[3][1] == brief_call(gold[0])
    assert [t for _, t, trained in conversation(row, "solve", rng) if trained] == [turns[5][1]]
    generic = conversation(row, "generic", rng)
    assert generic[3] == ("assistant", "think again", False) and generic[5][2]
    assert conversation(row, "no_reflect", rng)[2][1] == "wrong. retry"


def test_training_rows_come_from_the_training_stream_and_skip_excluded_keys():
    first = list(zip(range(50), training_rows(0, set(), {"hold_out_values": True, "max_calls": 1})))
    rows = [row for _, row in first]
    assert all(Values("train").owns(v) for v in _copied_values(rows))
    skipped = {fc.key(rows[0]), fc.key(rows[3])}
    again = [row for _, row in zip(range(48), training_rows(0, skipped, {"hold_out_values": True, "max_calls": 1}))]
    assert again == [r for r in rows if fc.key(r) not in skipped]


def test_the_countdown_tokenizer_is_unchanged_and_json_scaffolding_and_syllables_are_single_tokens():
    plain, extended = build_char_tokenizer(), build_char_tokenizer(TOKENS)
    assert len(plain) == 264 and len(extended) == 264 + len(TOKENS) == 264 + 2 + 140
    assert plain.get_vocab().items() <= extended.get_vocab().items()
    text = '[{"name":"f","arguments":{"a":1}}]'
    ids = extended(text, add_special_tokens=False)["input_ids"]
    assert extended.decode(ids) == text and len(ids) == len(text) - sum(len(t) - 1 for t in TOKENS[:2])
    for value in ("Gogeko", "tusu@ke.com", "Du gogeko", "the bapira"):
        ids = extended(value, add_special_tokens=False)["input_ids"]
        assert extended.decode(ids) == value and len(ids) < len(value)


def test_make_student_learns_function_calling_conversations(tmp_path):
    from r3kit.models.loading import ModelConfig, load_model

    cfg = StudentConfig(hidden=32, layers=1, heads=2, steps=3, batch_size=4)
    summary = make_student(cfg, tmp_path / "student", task="function_calling", generator={"max_calls": 1})
    assert len(summary["loss_curve"]) == 3
    _, tokenizer = load_model(ModelConfig(name=str(tmp_path / "student")))
    assert tokenizer.convert_tokens_to_ids(TOKENS[0]) == 264
    with pytest.raises(ValueError, match="can learn"):
        make_student(cfg, tmp_path / "other", task="sudoku")


def test_extract_conversations_answer_the_query_with_its_values_and_countdown_refuses_them(tmp_path):
    row = {"query": "Weather in Bapa?", "tools": "[]", "answers": json.dumps([{"name": "f", "arguments": {"a": "Bapa", "b": [1, 2]}},
                                                               {"name": "g", "arguments": {"c": 2.5}}])}
    assert conversation(row, "extract", random.Random(0)) == [("user", "Weather in Bapa?", False),
                                                               ("assistant", "Bapa [1,2] 2.5", True)]
    with pytest.raises(ValueError, match="mix_extract and extract_steps are for the function-calling student"):
        make_student(StudentConfig(hidden=32, layers=1, heads=2, steps=2, batch_size=2, extract_steps=1), tmp_path / "s")


def test_notebook_01_shows_each_students_own_conversations():
    """example_conversations: function calling's extract, solve and reflect turns; Countdown's in its own style."""
    from r3kit.data.function_calling import generate
    from r3kit.student.countdown import example_conversations

    rows = generate(3, seed=1, stream="train", hold_out_values=True, max_calls=2, max_distractors=1)
    shown = example_conversations(StudentConfig(extract_steps=5, steps=10, reflection_style="check"), "function_calling", rows)
    assert [turns[0][1] for turns in shown[:1]] == [rows[0]["query"]]  # extract: the query alone
    assert shown[1][-1] == ("assistant", dump(json.loads(rows[1]["answers"])), True)
    assert len(shown[2]) == 6 and shown[2][3][2] is True  # reflect: the reflection is trained
    countdown = [{"nums": [37, 49, 5], "target": 60}, {"nums": [7, 3, 12], "target": 33}, {"nums": [2, 3, 10], "target": 5}]
    checked = example_conversations(StudentConfig(reflection_style="check", worked_attempts=True), "countdown", countdown)
    assert " not 33. " in checked[1][3][1]  # the check style's reflection checks the failed attempt first
