"""The Countdown verifier against hand-written cases, and properties over arbitrary text."""

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r3kit.data.countdown import generate, solve
from r3kit.tasks import get_task

TASK = get_task("countdown")
EX = {"target": 24, "nums": [3, 4, 2]}


def verdict(answer_text, example=EX):
    return TASK.verify(answer_text, example)


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>3 * 4 * 2</answer>",
        "<answer>(3*4)*2</answer>",
        "thinking... <answer>2*(4*3)</answer>",
        "<answer> 3*4*2 \n</answer>",
        "<answer>3 * (4 + 4)</answer> no wait <answer>4 * 3 * 2</answer>",  # last tag counts
        "<answer>--3*4*2</answer>",  # unary signs, as Python's eval in TinyZero accepts
    ],
)
def test_correct_answers_pass(completion):
    assert verdict(completion).ok, verdict(completion)


@pytest.mark.parametrize(
    ("completion", "reason_part"),
    [
        ("<answer>3 * 4 + 2</answer>", "value 14 is not the target 24"),
        ("<answer>3 * 4 * 2 * 2</answer>", "numbers do not match: extra [2]"),
        ("<answer>4 * 3 * 2 * 1</answer>", "extra [1]"),
        ("<answer>3 * 8</answer>", "extra [8], unused [2, 4]"),
        ("<answer>12 * 2</answer>", "numbers do not match"),
        ("<answer>3 * 4 ^ 2</answer>", "illegal character '^'"),
        ("<answer>3 ** 4 * 2</answer>", "'**' is not allowed"),
        ("<answer>3 * * 4 * 2</answer>", "'**' is not allowed"),
        ("<answer>3.0 * 4 * 2</answer>", "illegal character '.'"),
        ("<answer>x = 3*4*2</answer>", "illegal character 'x'"),
        ("<answer>3 * 4 * 2 = 24</answer>", "illegal character '='"),
        ("<answer>3 * 4 * ٢</answer>", "illegal character"),  # an Arabic-Indic digit is not a digit here
        ("<answer>3 * 4 * 2)</answer>", "unexpected ')'"),
        ("<answer>(3 * 4 * 2</answer>", "unbalanced parentheses"),
        ("<answer></answer>", "empty answer"),
        ("<answer>   </answer>", "empty answer"),
        ("3 * 4 * 2", "no <answer> tag"),
        ("", "no <answer> tag"),
        ("<answer>3*4*2", "no <answer> tag"),
        ("3*4*2</answer>", "no <answer> tag"),
        ("<answer>3 * 4 * 2</answer> then <answer>3 + 4 + 2</answer>", "value 9"),  # the last tag counts
    ],
)
def test_wrong_answers_fail_with_reason(completion, reason_part):
    result = verdict(completion)
    assert not result.ok
    assert reason_part in result.reason, result.reason


def test_division_by_zero_is_a_verdict_not_an_exception():
    result = TASK.verify("<answer>3 / (4 - 4) + 2</answer>", {"target": 1, "nums": [3, 4, 4, 2]})
    assert not result.ok and result.reason == "division by zero"


def test_exact_fractions_not_floats():
    # 1/3 * 3 is exactly 1 over fractions (a float evaluation would give 0.999...)
    assert TASK.verify("<answer>1 / 3 * 3</answer>", {"target": 1, "nums": [1, 3, 3]}).ok
    assert TASK.verify("<answer>(7 - 1 / 3) * 3</answer>", {"target": 20, "nums": [7, 1, 3, 3]}).ok


def test_huge_numbers_and_deep_nesting_are_bounded():
    assert "more than 12 digits" in verdict("<answer>" + "9" * 50 + "</answer>").reason
    assert "longer than" in verdict("<answer>" + "9" * 5000 + "</answer>").reason
    assert "deeper than" in verdict("<answer>" + "(" * 200 + "3*4*2" + ")" * 200 + "</answer>").reason
    assert "deeper than" in verdict("<answer>" + "-" * 300 + "3*4*2</answer>").reason
    assert "longer than" in verdict("<answer>" + "3+" * 1000 + "3</answer>").reason


def test_a_target_a_repeated_number_must_be_used_twice():
    assert TASK.verify("<answer>5 * 5 - 1</answer>", {"target": 24, "nums": [5, 5, 1]}).ok
    assert "unused [5]" in TASK.verify("<answer>5 * 5 - 1</answer>", {"target": 24, "nums": [5, 5, 5, 1]}).reason


def test_non_text_completion_is_a_failed_verdict():
    assert not TASK.verify(None, EX).ok
    assert not TASK.verify(b"<answer>3*4*2</answer>", EX).ok


def test_bad_examples_are_named():
    with pytest.raises(ValueError, match="missing column"):
        TASK.validate_example({"target": 3})
    with pytest.raises(ValueError, match="nums"):
        TASK.validate_example({"target": 3, "nums": "1 2"})


def test_first_messages_and_turns_use_the_prompt_templates():
    messages = TASK.first_messages(EX)
    assert messages[-1]["role"] == "user" and "[3, 4, 2]" in messages[-1]["content"] and "24" in messages[-1]["content"]
    compact = get_task("countdown", style="compact")
    assert compact.first_messages(EX) == [{"role": "user", "content": "3 4 2 = 24"}]
    assert compact.reflection_request()["role"] == "user"
    assert get_task("countdown", task="{target} from {nums}").first_messages(EX)[-1]["content"] == "24 from [3, 4, 2]"


@given(st.text(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_verifier_never_raises_on_arbitrary_text(text):
    for completion in (text, f"<answer>{text}</answer>"):
        start = time.perf_counter()
        result = TASK.verify(completion, {"target": 10, "nums": [1, 2, 3, 4]})
        assert isinstance(result.ok, bool) and isinstance(result.reason, str)
        assert time.perf_counter() - start < 0.05


@given(st.text(alphabet="0123456789+-*/() ", max_size=600))
@settings(max_examples=300, deadline=None)
def test_verifier_never_raises_on_arithmetic_looking_text(text):
    start = time.perf_counter()
    result = TASK.verify(f"<answer>{text}</answer>", {"target": 10, "nums": [1, 2, 3, 4]})
    assert isinstance(result.ok, bool)
    assert time.perf_counter() - start < 0.05


@given(st.integers(min_value=0, max_value=10_000))
@settings(max_examples=60, deadline=None)
def test_every_generated_problem_has_a_solution_that_verifies(seed):
    for row in generate(3, seed=seed, num_counts=(3, 4)):
        solution = solve(row["nums"], row["target"], random.Random(seed))
        assert solution is not None
        assert TASK.verify(f"<answer>{solution}</answer>", row).ok


def test_solver_finds_known_solutions_and_reports_impossible_ones():
    assert TASK.verify(f"<answer>{solve([1, 2, 3, 4], 24)}</answer>", {"target": 24, "nums": [1, 2, 3, 4]}).ok
    assert solve([1, 1, 1], 100) is None


def test_written_operations_checks_each_single_operation_and_never_a_chain():
    from r3kit.tasks.countdown import written_operations

    assert written_operations("49-37=12,12*5=60 so <answer>(49-37)*5</answer>") == [True, True]
    assert written_operations("49-37=11,49-11=60") == [False, False]  # a slip, then a faked target
    assert written_operations("check: 7+14=21. then 8/0=1, 9/3=3") == [True, False, True]
    assert written_operations("2+3+4=9 and -3+5=2 and 1.5+2=3.5") == []  # chains, signs and decimals are not single
    assert written_operations("no steps <answer>1+2</answer>") == [] and get_task("countdown").operations(None) is None


@pytest.mark.parametrize(("attempt", "fault", "first"), [
    ("9+7=15,15*3=45 so <answer>(9+7)*3</answer>", "9+7=16 not 15.", "9+7=16"),
    ("9+7=16,16*3=50 so <answer>(9+7)*3+1-1</answer>", "1 not given.", "9+7=16"),
    ("9+9=18,18*3=54 so <answer>(9+9)*3</answer>", "9 twice, 7 unused.", "9+9=18"),
    ("9-7=2,2*3=6 so <answer>(9-7)*3</answer>", "(9-7)*3=6 not 48.", "9-7=2"),
    ("9-7=2,2*3=6 so <answer>(9-7*3</answer>", "(9-7*3 is not valid.", "9-7=2"),
    ("9/0=1 so <answer>9/0*7*3</answer>", "9/0*7*3 is not valid.", None),
    ("7/3=2 so <answer>(7/3)*9</answer>", "7/3=2.33 not 2.", None),
    ("I give up", "no equation.", None),
    ("<answer> </answer>", "the empty equation is not valid.", None),
    ("<answer>3*3*3*3</answer>", "3 4 times, 7 unused, 9 unused.", None),
])
def test_diagnose_names_the_first_fault_recomputed_from_the_attempt(attempt, fault, first):
    from r3kit.tasks.countdown import diagnose

    assert diagnose(attempt, [9, 7, 3], 48) == (fault, first)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_reading_a_reflection_never_raises_on_any_text(attempt, reflection):
    read = TASK.read_reflection({"nums": [9, 7, 3], "target": 48}, attempt, reflection)
    assert set(read) == {"values_right", "names_the_fault", "conclusion_verifies", "repeats_failed"}


def test_reading_a_reflection():
    example = {"nums": [9, 7, 3], "target": 48}
    attempt = "9+7=15,15*3=45 so <answer>(9+7)*3+0</answer>"
    good = TASK.read_reflection(example, attempt, "0 not given. 9+7=16,16*3=48 so (9+7)*3")
    assert good == {"values_right": 1.0, "names_the_fault": True, "conclusion_verifies": True, "repeats_failed": False}
    copied = TASK.read_reflection(example, attempt, "9+7=15 not 15. 9+7=15,15*3=45 so (9+7)*3+0")
    assert copied == {"values_right": pytest.approx(1 / 3), "names_the_fault": False, "conclusion_verifies": False,
                      "repeats_failed": True}  # 9+7=15 twice wrong, 15*3=45 right
    assert TASK.read_reflection(example, attempt, "no idea")["values_right"] is None
    assert TASK.read_reflection(example, None, "x") is None
    assert TASK.read_reflection(example, attempt, "x" * 100_000)["conclusion_verifies"] is False


@pytest.mark.parametrize("seed", range(5))
def test_the_oracle_reflection_names_the_fault_then_works_a_solution_that_verifies(seed):
    from r3kit.tasks.countdown import diagnose, written_operations

    for problem in generate(30, seed=seed, num_counts=(3, 4)):
        attempt = "<answer>" + "+".join(map(str, problem["nums"])) + "+1</answer>"
        oracle = TASK.oracle_reflection(problem, attempt)
        fault, _ = diagnose(attempt, problem["nums"], problem["target"])
        assert oracle.startswith(fault + " ") and " so " in oracle
        steps, conclusion = oracle[len(fault) + 1:].rsplit(" so ", 1)
        assert len(steps.split(",")) == len(problem["nums"]) - 1
        assert all(written_operations(steps)) or "." in steps  # whole values are right; fractions are rounded
        assert TASK.verify(f"<answer>{conclusion}</answer>", problem).ok
    assert TASK.oracle_reflection({"nums": [1, 1], "target": 7}, "<answer>1+1</answer>") is None


def test_diagnose_counts_numbers_given_more_than_once():
    from r3kit.tasks.countdown import diagnose

    assert diagnose("<answer>9*9*9</answer>", [9, 9, 3], 48)[0] == "9 three times, 3 unused."
    assert diagnose("<answer>3</answer>", [9, 9, 3], 48)[0] == "9 unused twice."
