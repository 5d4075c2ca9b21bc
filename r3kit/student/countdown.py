"""The CPU student: a small Qwen2 the kit trains itself, offline, to have partial Countdown skill
(or function-calling skill: the same model, loop and mix on student/function_calling.py's conversations).

Models that show R3's effect (1.5B+) cannot run on a CPU, and a random or 135M model has no skill to
build on. So the cpu-demo makes its own: a character-level Qwen2 (about 1.8M parameters) trained by
plain supervised learning, for a fixed number of steps (or, with stop_at_first_try, until its greedy first
try on validation rows reaches that rate, and/or with stop_at_arithmetic, until its greedy exact match on single
operations does, checked every check_every steps), on generated Countdown problems written as
R3 conversations in the compact prompt style. For every problem a random correct solution with whole
intermediate values is chosen; its worked form is the reflection. The training mix:
    solve       problem -> <answer>(49-37)*5</answer>
    reflect     problem -> a wrong attempt (not trained on) -> "wrong. reflect"
                -> "49-37=12,12*5=60 so (49-37)*5" -> "retry" -> <answer>(49-37)*5</answer>
    no_reflect  problem -> wrong attempt -> "wrong. retry" -> <answer>(49-37)*5</answer>
    generic     problem -> wrong attempt -> "wrong. reflect" -> the generic reflection -> "retry" -> answer
With `worked_attempts` (the cpu-demo profile) first attempts and retries without a reflection work the
solution out first, like a reasoning model:
"49-37=12,12*5=60 so <answer>(49-37)*5</answer>" (and a wrong attempt's steps carry their true values,
"49+37=86,86-5=81 so <answer>(49+37)-5</answer>"), so attempts and reflections exercise one skill and a
better reflection can also make a better first attempt.
With reflection_style="check" (the cpu-study profile) a reflection first checks the failed attempt, then
works a fix from it, preferring a solution that keeps the attempt's first step:
    attempt     "49+37=86,86-5=81 so <answer>(49+37)-5</answer>"
    reflection  "(49+37)-5=81 not 60. 49+37=86,86-26=60 so (49+37)-26"   (if a plan keeps 49+37)
so a good reflection is about the failed attempt and differs from a fresh solve.
With reflection_style="recompute" a failed attempt carries the kinds of fault a student makes (FAULTS: an honest
wrong equation, a last step that fakes the target, a slipped step, a misused number), and the reflection
recomputes the attempt from its own operands, names its first fault, then searches from its first step
rewritten with the true value (r3kit.tasks.countdown.diagnose), rejecting second steps by their true values:
    attempt     "49+37=85,85-5=80 so <answer>(49+37)-5</answer>"
    reflection  "49+37=86 not 85. 49+37=86,86+26=112 no,86-26=60 so (49+37)-26"
With reflection_style="verify" the same reflection writes the target beside each searched value and tries up to
three second steps ("86+26=112 vs 60 no,86-26=60 vs 60 so (49+37)-26"), and half the single operations are
comparisons ("compare 32 26" -> "32 vs 26 no"), so stopping is a comparison of two numbers side by side.
With reflection_style="exhaustive" the search is the same for every problem: from the true first step (or, where no
plan keeps it, the first plan on the same pair, else the first plan), every second step in SECOND_STEPS order until
one reaches the target ("86+26=112 vs 60 no,86-26=60 vs 60 so (49+37)-26"), so the reflection is a function of the
problem and the failed attempt, with no random choice for the student to imitate.
A reflection copying the attempt's values is then wrong in every slipped or faked step, so the student can only
reach the answer by recomputing. Retries without a reflection solve afresh, and single operations
("compute 16*3" -> "16*3=48", kind "arith", and `arith_steps` of them alone first) teach the arithmetic itself.
So the student learns that a reflection works a solution out, step by step with its values, and that
a retry writes down the equation its reflection concluded with. Its own reflections are attempts, often wrong
(a wrong value, a step that cannot reach the target), right often enough to help. R3 rewards the
reflections whose retry passed the verifier: nothing but its own text and that verdict reaches it.
Problems whose (target, numbers) appear in `exclude` (the evaluation split) are never trained on.
A long SFT (the function-calling student's takes hours on a CPU) saves its whole training state to
<student>/training_state.pt every CHECKPOINT_SECONDS; a rerun with the same settings resumes from it and
replays the data stream to that step, so the saved student is bit for bit the one an unbroken run makes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from r3kit.data.countdown import iter_problems, key
from r3kit.infra.io import write_json
from r3kit.infra.notebook import progress as tqdm
from r3kit.models.generation import HFGenerator, Sampling
from r3kit.models.loading import build_char_model, save_model, torch
from r3kit.student import function_calling as student_calls
from r3kit.tasks import get_task
from r3kit.tasks.countdown import diagnose, evaluate_expression, extract_answer

_OPS = ("+", "-", "*", "/")
CHECKPOINT_SECONDS = 300.0  # the most training time a crash can lose (checkpoints do not change the student)
STATE_FILE = "training_state.pt"
REFLECTION_STYLES = ("fresh", "check", "recompute", "verify", "exhaustive")
# the exhaustive style's second steps, in the order it tries them: "r" puts the third number first (26-86)
SECOND_STEPS = ("+", "-", "r-", "*", "/", "r/")
SEARCHED = {"recompute": 2, "verify": 3, "exhaustive": len(SECOND_STEPS)}  # the most second steps a reflection tries and rejects
VERSUS = ("verify", "exhaustive")  # the styles that write the target beside each searched value
# the kinds of failed attempt a recompute-style student is shown, and how often: an honest wrong equation with its
# true values, a last step that claims the target, a first step with a slipped value, a number used twice
FAULTS = {"honest": 0.2, "faked_target": 0.3, "slipped_step": 0.2, "misused_number": 0.3}
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class StudentConfig:
    hidden: int = 192
    layers: int = 4
    heads: int = 6
    min_num: int = 1
    max_num: int = 50
    min_target: int = 1
    max_target: int = 100
    steps: int = 800
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    mix_solve: float = 0.35
    mix_reflect: float = 0.45
    mix_no_reflect: float = 0.1
    mix_generic: float = 0.1
    mix_arith: float = 0.0  # countdown only: single operations, "compute 16*3" -> "16*3=48"
    arith_steps: int = 0  # countdown only: after extract_steps, steps that train on single operations alone
    mix_extract: float = 0.0  # function calling only: the query -> its calls' values, to learn copying (student/function_calling.py)
    extract_steps: int = 0  # function calling only: the first steps train on "extract" conversations alone
    lr_schedule: str = "cosine"  # "cosine" to 0 at `steps`; "constant" after warm-up (a stopped student is a prefix of a longer one)
    stop_at_first_try: float | None = None  # stop once greedy first try on validation reaches this (None: run all steps)
    # countdown: stop once greedy exact match on single operations (arithmetic_accuracy) reaches this; with
    # stop_at_first_try too, once both are reached (None: run all steps)
    stop_at_arithmetic: float | None = None
    check_every: int = 100  # steps between those validation checks (counted after extract_steps and arith_steps)
    check_rows: int = 100  # validation rows a check attempts
    worked_attempts: bool = False  # attempts work the solution out first: "49-37=12,12*5=60 so <answer>(49-37)*5</answer>"
    reflection_style: str = "fresh"  # "fresh": a worked solution; "check": check the failed attempt, then fix it;
    # "recompute": recompute the attempt's steps, name its first fault, fix it from its first step (needs worked_attempts);
    # "verify": as recompute, each searched step stating the target beside its value ("12+10=22 vs 26 no,");
    # "exhaustive": as verify, trying every second step in a fixed order (SECOND_STEPS) until one reaches the target
    seed: int = 0
    device: str = "cpu"  # "cuda" trains on a GPU (the saved student is the same files; results differ in the last bits)

    def validate(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"student.device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if min(self.mix_solve, self.mix_reflect, self.mix_no_reflect, self.mix_generic, self.mix_extract, self.mix_arith) < 0:
            raise ValueError("mix weights must be non-negative")
        if self.extract_steps < 0 or self.arith_steps < 0 or self.extract_steps + self.arith_steps >= self.steps:
            raise ValueError(f"student.extract_steps and arith_steps must be >= 0 and together below steps ({self.steps}), "
                             f"got {self.extract_steps} and {self.arith_steps}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"student.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("stop_at_first_try", "stop_at_arithmetic"):
            target = getattr(self, name)
            if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1):
                raise ValueError(f"student.{name} must be in (0, 1] or None, got {target}")
        if self.check_every < 1 or self.check_rows < 1:
            raise ValueError(f"student.check_every and check_rows must be >= 1, got {self.check_every}, {self.check_rows}")
        if self.reflection_style not in REFLECTION_STYLES:
            raise ValueError(f"reflection_style must be one of {REFLECTION_STYLES}, got {self.reflection_style!r}")
        if self.reflection_style in SEARCHED and not self.worked_attempts:
            raise ValueError(f"reflection_style={self.reflection_style!r} recomputes an attempt's worked steps; "
                             "set worked_attempts=True")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")

    def generator_ranges(self) -> dict:
        """The data generator's ranges for the student's world (3-number problems)."""
        return {"num_counts": (3,), "min_num": self.min_num, "max_num": self.max_num,
                "min_target": self.min_target, "max_target": self.max_target}


def _value(op: str, a: int, b: int) -> int | None:
    """a op b when it is a whole number >= 0 (the plans the student is taught), else None."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a >= b else None
    if op == "*":
        return a * b
    return a // b if b and a % b == 0 else None


def plans(nums: list[int], target: int) -> list[tuple[str, str]]:
    """(reflection, answer) pairs for a 3-number problem: the reflection works a solution out step by step
    with its values and ends with the equation ("49-37=12,12*5=60 so (49-37)*5"); the answer is that
    equation ("(49-37)*5"), so a retry only has to write down what its reflection concluded."""
    out = []
    for i, j, k in ((0, 1, 2), (0, 2, 1), (1, 2, 0), (1, 0, 2), (2, 0, 1), (2, 1, 0)):
        a, b, c = nums[i], nums[j], nums[k]
        for op in _OPS:
            v = _value(op, a, b)
            if v is None:
                continue
            for op2 in _OPS:
                if _value(op2, v, c) == target:
                    answer = f"({a}{op}{b}){op2}{c}"
                    out.append((f"{a}{op}{b}={v},{v}{op2}{c}={target} so {answer}", answer))
                if op2 in "-/" and _value(op2, c, v) == target:
                    answer = f"{c}{op2}({a}{op}{b})"
                    out.append((f"{a}{op}{b}={v},{c}{op2}{v}={target} so {answer}", answer))
    return sorted(set(out))


def worked(reflection: str, answer: str) -> str:
    """A worked attempt: the reflection's steps, then the answer ("49-37=12,12*5=60 so <answer>(49-37)*5</answer>")."""
    return f"{reflection.rsplit(' so ', 1)[0]} so <answer>{answer}</answer>"


def _steps(a: int, b: int, c: int, rng: random.Random):
    """A random two-step equation over a, b, c: (equation, first step's operator, its value, whether c comes
    first in the second step, the second step's operator, its value); a value is None where it is not whole."""
    op1, op2 = rng.choice(_OPS), rng.choice(_OPS)
    inner = _value(op1, a, b)
    c_first = rng.random() >= 0.7
    answer = f"{c}{op2}({a}{op1}{b})" if c_first else f"({a}{op1}{b}){op2}{c}"
    outer = None if inner is None else _value(op2, c, inner) if c_first else _value(op2, inner, c)
    return answer, op1, inner, c_first, op2, outer


def _written(a: int, op1: str, b: int, v1, c: int, c_first: bool, op2: str, v2, answer: str) -> str:
    second = f"{c}{op2}{v1}" if c_first else f"{v1}{op2}{c}"
    return f"{a}{op1}{b}={v1},{second}={v2} so <answer>{answer}</answer>"


def wrong_attempt(nums: list[int], target: int, rng: random.Random, work: bool = False) -> str:
    """A well-formed attempt, in the same form as the answers, whose value is not the target; with `work`,
    its steps come first with their true values ("49+37=86,86-5=81 so <answer>(49+37)-5</answer>")."""
    task = get_task("countdown")
    for _ in range(20):
        a, b, c = rng.sample(list(nums), 3)
        answer, op1, inner, c_first, op2, outer = _steps(a, b, c, rng)
        if work and outer is None:
            continue
        text = _written(a, op1, b, inner, c, c_first, op2, outer, answer) if work else f"<answer>{answer}</answer>"
        if not task.verify(text, {"nums": nums, "target": target}).ok:
            return text
    return f"<answer>{nums[0]}</answer>"


def faulty_attempt(nums: list[int], target: int, rng: random.Random) -> str:
    """A failed worked attempt with one of the faults in FAULTS, drawn in its proportion:
        honest          "49+37=86,86-5=81 so <answer>(49+37)-5</answer>"    (true values, wrong equation)
        faked_target    "49+37=86,86-5=60 so <answer>(49+37)-5</answer>"    (the last value claims the target)
        slipped_step    "49+37=85,85-5=80 so <answer>(49+37)-5</answer>"    (the first value is off)
        misused_number  "49+49=98,98-5=93 so <answer>(49+49)-5</answer>"    (a number twice, another unused)"""
    fault = rng.choices(list(FAULTS), list(FAULTS.values()))[0]
    task = get_task("countdown")
    for _ in range(20):
        a, b, c = rng.sample(list(nums), 3)
        if fault == "misused_number":
            a, b, c = rng.choice([(a, a, c), (a, b, a), (a, b, b)])
        answer, op1, inner, c_first, op2, outer = _steps(a, b, c, rng)
        if outer is None:
            continue
        first, last = inner, outer
        if fault == "slipped_step":
            first = inner + rng.choice((-2, -1, 1, 2))
            last = _value(op2, c, first) if c_first else _value(op2, first, c) if first >= 0 else None
            if first < 0 or last is None:
                continue
        elif fault == "faked_target":
            last = target
        text = _written(a, op1, b, first, c, c_first, op2, last, answer)
        if not task.verify(text, {"nums": nums, "target": target}).ok:
            return text
    return wrong_attempt(nums, target, rng, work=True)


def check(attempt: str, target: int) -> str:
    """The check of a failed attempt: its equation, its true value and the target ("(49+37)-5=81 not 60.")."""

    equation = extract_answer(attempt) or ""
    try:
        value = evaluate_expression(equation)[0]
    except ValueError:
        return f"{equation} is not valid."
    shown = value.numerator if value.denominator == 1 else round(float(value), 2)
    return f"{equation}={shown} not {target}."


def fix_from(attempt: str, options: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The plans that keep the attempt's first step ("49+37=86"), else those that start from the same two
    numbers, else all of them."""
    first = attempt.split(",", 1)[0]
    same_step = [o for o in options if o[0].split(",", 1)[0] == first]
    if same_step:
        return same_step
    pair = sorted(re.findall(r"\d+", first.split("=", 1)[0]))
    same_pair = [o for o in options if sorted(re.findall(r"\d+", o[0].split("=", 1)[0])) == pair]
    return same_pair or options


def second_steps(value: int, third: int) -> list[tuple[str, str, int, bool]]:
    """The second steps from a first step's value and the third number, in SECOND_STEPS order, those with a whole
    value >= 0: (written step "86+26=112", its operator, its value, whether the third number comes first)."""
    out = []
    for name in SECOND_STEPS:
        op, third_first = name[-1], name.startswith("r")
        a, b = (third, value) if third_first else (value, third)
        if (v := _value(op, a, b)) is not None:
            out.append((f"{a}{op}{b}={v}", op, v, third_first))
    return out


def searched(plan: str, target: int, rng: random.Random, style: str = "recompute") -> str:
    """A plan with 0 to SEARCHED[style] second steps tried and rejected before the one that reaches the target, each
    with its true value ("49+37=86,86+26=112 no,86-26=60 so (49+37)-26"): a step's value is computed, not the
    target copied. Style "verify" writes the target beside each searched value ("86+26=112 vs 60 no,86-26=60 vs 60
    so"), so whether to stop is a comparison of two numbers side by side."""
    steps, answer = plan.rsplit(" so ", 1)
    first, second = steps.split(",")
    value = int(first.split("=")[1])
    x, _, y = re.fullmatch(r"(\d+)([+\-*/])(\d+)=\d+", second).groups()
    other = int(y) if int(x) == value else int(x)
    tried = sorted({written for written, _, v, _ in second_steps(value, other) if v != target})
    rejected = rng.sample(tried, min(rng.choice(range(SEARCHED[style] + 1)), len(tried)))
    versus = f" vs {target}" if style == "verify" else ""
    return f"{first},{''.join(f'{t}{versus} no,' for t in rejected)}{second}{versus} so {answer}"


def exhaustive(first: str | None, problem: dict, options: list[tuple[str, str]]) -> tuple[str, str]:
    """An exhaustive-style (plan, answer): from `first` where a plan keeps it, else from the first step of the first
    plan fix_from offers, every second step in SECOND_STEPS order until one reaches the target, each with its true
    value and the target beside it ("49+37=86,86+26=112 vs 60 no,86-26=60 vs 60 so (49+37)-26")."""
    target = problem["target"]
    starts = {plan.split(",")[0] for plan, _ in options}
    step = first if first in starts else sorted(fix_from(first or "", options))[0][0].split(",")[0]
    a, op1, b, value = re.fullmatch(r"(\d+)([+\-*/])(\d+)=(\d+)", step).groups()
    rest = list(problem["nums"])
    rest.remove(int(a))
    rest.remove(int(b))
    third, rejected = rest[0], []
    for written, op, v, third_first in second_steps(int(value), third):
        if v == target:
            answer = f"{third}{op}({a}{op1}{b})" if third_first else f"({a}{op1}{b}){op}{third}"
            return f"{step},{''.join(rejected)}{written} vs {target} so {answer}", answer
        rejected.append(f"{written} vs {target} no,")
    raise ValueError(f"no second step from {step} reaches {target}")  # unreachable: every start is a plan's


def recompute(failed: str, problem: dict, options: list[tuple[str, str]], rng: random.Random,
              style: str = "recompute") -> tuple[str, str]:
    """A recompute-style (reflection, answer): the attempt's first fault (diagnose), then a search from its first
    step rewritten with the true value ("49+37=86 not 85. 49+37=86,86+26=112 no,86-26=60 so (49+37)-26")."""
    fault, first = diagnose(failed, problem["nums"], problem["target"])
    if style == "exhaustive":
        plan, solution = exhaustive(first, problem, options)
        return f"{fault} {plan}", solution
    reflection, solution = rng.choice(fix_from(first or "", options))
    return f"{fault} {searched(reflection, problem['target'], rng, style)}", solution


def arithmetic(cfg: StudentConfig, rng: random.Random) -> list[tuple[str, str, bool]]:
    """A single-operation conversation ("compute 16*3" -> "16*3=48"), its operands as the student's steps have
    them: two numbers of its range, or (half the time) one of them and the whole value of an operation on two."""
    def number() -> int:
        return rng.randint(cfg.min_num, cfg.max_num)

    while True:
        op, a, b = rng.choice(_OPS), number(), number()
        if rng.random() < 0.5:
            step = _value(rng.choice(_OPS), a, number())
            if step is None:
                continue
            a, b = (step, b) if rng.random() < 0.5 else (b, step)
        if op == "/" and b:
            a = a * b if rng.random() < 0.7 else a  # mostly whole quotients, as plans have them
        value = _value(op, a, b)
        if value is not None:
            return [("user", f"compute {a}{op}{b}", False), ("assistant", f"{a}{op}{b}={value}", True)]


def comparison(cfg: StudentConfig, rng: random.Random) -> list[tuple[str, str, bool]]:
    """A comparison as a verify-style reflection writes it, on a value of the student's steps and a target of its
    range, equal half the time ("compare 32 26" -> "32 vs 26 no"; "compare 26 26" -> "26 vs 26 so")."""
    target = rng.randint(cfg.min_target, cfg.max_target)
    if rng.random() < 0.5:
        value = target
    else:
        near = [v for v in range(max(0, target - 9), target + 10) if v != target]  # the hard cases: close values
        value = rng.choice(near) if rng.random() < 0.5 else rng.randint(0, cfg.max_num * cfg.max_num)
        if value == target:
            value += 1
    said = "so" if value == target else "no"
    return [("user", f"compare {value} {target}", False), ("assistant", f"{value} vs {target} {said}", True)]


ARITHMETIC_SEED = 104_729  # the probe's operations: a stream of its own, apart from training's


def arithmetic_accuracy(model, tokenizer, cfg: StudentConfig, n: int = 400) -> dict:
    """Greedy exact match of the student on n single operations drawn as `arithmetic` draws them (from a seed
    of their own): {"accuracy", "n", "by_op": {op: accuracy}}. Operations can repeat ones seen in training:
    this measures the skill the reflections need, not generalisation."""

    rng = random.Random(ARITHMETIC_SEED)
    asked = [arithmetic(cfg, rng) for _ in range(n)]
    said = HFGenerator(model, tokenizer, batch_size=200).generate(
        [[{"role": "user", "content": turns[0][1]}] for turns in asked],
        Sampling(max_new_tokens=max(len(turns[1][1]) for turns in asked) + 2))
    right = {op: [] for op in _OPS}
    for turns, completion in zip(asked, said):
        expected = turns[1][1]
        right[re.search(r"\d([+\-*/])", expected).group(1)].append(completion.text.strip() == expected)
    every = [ok for oks in right.values() for ok in oks]
    return {"accuracy": sum(every) / len(every), "n": len(every),
            "by_op": {op: sum(oks) / len(oks) for op, oks in right.items() if oks}}


def conversation(problem: dict, kind: str, rng: random.Random, work: bool = False,
                 style: str = "fresh") -> list[tuple[str, str, bool]] | None:
    """(role, content, trained) turns of one training conversation, or None if no integer plan exists.
    With `work` (worked attempts), first attempts and retries without a reflection show their steps;
    with style "check", a reflection checks the failed attempt and fixes it; with "recompute", failed attempts
    carry FAULTS and a reflection recomputes, names the fault and fixes it (see the module docstring)."""
    task = get_task("countdown", style="compact")
    options = plans(problem["nums"], problem["target"])
    if not options:
        return None
    if style in SEARCHED and kind != "solve":
        failed = faulty_attempt(problem["nums"], problem["target"], rng)
        if kind == "reflect":
            reflection, solution = recompute(failed, problem, options, rng, style)
        else:  # retries without the reflection solve afresh
            reflection, solution = rng.choice(options)
    elif style == "check" and kind == "reflect":  # the failed attempt first: the reflection is about it
        failed = wrong_attempt(problem["nums"], problem["target"], rng, work)
        reflection, solution = rng.choice(fix_from(failed, options))
        reflection = f"{check(failed, problem['target'])} {reflection}"
    else:  # this order of random draws is the one the cpu-demo student was always trained with
        reflection, solution = rng.choice(options)
        failed = wrong_attempt(problem["nums"], problem["target"], rng, work) if kind != "solve" else ""
    answer = f"<answer>{solution}</answer>"
    attempt = worked(reflection, solution) if work else answer
    p = task.prompts
    turns = [("user", task.first_messages(problem)[-1]["content"], False)]
    if kind == "solve":
        return turns + [("assistant", attempt, True)]
    turns.append(("assistant", failed, False))
    if kind == "no_reflect":
        return turns + [("user", p.retry_without_reflection, False), ("assistant", attempt, True)]
    said = (reflection, True) if kind == "reflect" else (p.generic_reflection, False)
    return turns + [("user", p.reflection_request, False), ("assistant", *said),
                    ("user", p.retry_request, False), ("assistant", answer, True)]


def example_conversations(cfg: StudentConfig, task: str, rows, seed: int = 0) -> list[list[tuple[str, str, bool]]]:
    """A few training conversations of the student of `task`, one per kind, regenerated from `rows` with a fixed
    seed (what notebook 01 shows): countdown's solve, reflect and no_reflect; function calling's extract (if the
    student has extract steps), solve and reflect."""
    rng = random.Random(seed)
    if task == "countdown":
        kinds = ["solve", "reflect", "no_reflect"]
        made = [conversation(dict(row), kind, rng, cfg.worked_attempts, cfg.reflection_style) for row, kind in zip(rows, kinds)]
        return [turns for turns in made if turns is not None]
    kinds = ["extract", "solve", "reflect"] if cfg.extract_steps else ["solve", "reflect", "no_reflect"]
    return [student_calls.conversation(dict(row), kind, rng, cfg.reflection_style) for row, kind in zip(rows, kinds)]


def encode(tokenizer, turns: list[tuple[str, str, bool]]) -> tuple[list[int], list[int]]:
    """Token ids of the chat-template rendering and labels (-100 where not trained)."""
    ids, labels = [], []
    for role, content, trained in turns:
        head = [tokenizer.convert_tokens_to_ids(f"<|{role}|>")]
        body = tokenizer(content, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids += head + body
        labels += [-100] * len(head) + (body if trained else [-100] * len(body))
    return ids, labels


def training_problems(cfg: StudentConfig, exclude: set):
    """The endless stream of training problems (repeats allowed), never one whose key is in `exclude`."""
    for problem in iter_problems(None, seed=cfg.seed + 7919, distinct=False, **cfg.generator_ranges()):
        if key(problem) not in exclude:
            yield problem


TASKS = ("countdown", "function_calling")


def _conversations(cfg: StudentConfig, exclude: set, rng: random.Random, task: str, generator: dict | None):
    """kind -> the turns of the next training conversation of that kind (None: skip this problem)."""
    if task == "countdown":
        problems = training_problems(cfg, exclude)
        def arith() -> list[tuple[str, str, bool]]:  # a verify-style student also learns the comparison it stops on
            return comparison(cfg, rng) if cfg.reflection_style in VERSUS and rng.random() < 0.5 else arithmetic(cfg, rng)

        return lambda kind: (arith() if kind == "arith" else
                             conversation(next(problems), kind, rng, cfg.worked_attempts, cfg.reflection_style))
    if task == "function_calling":
        rows = student_calls.training_rows(cfg.seed, exclude, generator or {})
        return lambda kind: student_calls.conversation(next(rows), kind, rng, cfg.reflection_style)
    raise ValueError(f"the CPU student can learn {TASKS}, not {task!r}")


def _batches(cfg: StudentConfig, tokenizer, exclude: set, rng: random.Random, task: str = "countdown",
             generator: dict | None = None):
    """Endless batches; each batch holds one kind of conversation, so its rows have similar lengths."""
    # the kinds added later come last: with weight 0 they leave the draws as they were
    kinds = ["solve", "reflect", "no_reflect", "generic", "extract", "arith"]
    weights = [cfg.mix_solve, cfg.mix_reflect, cfg.mix_no_reflect, cfg.mix_generic, cfg.mix_extract, cfg.mix_arith]
    next_turns = _conversations(cfg, exclude, rng, task, generator)
    for step in itertools.count():
        if step < cfg.extract_steps:
            kind = "extract"
        elif step < cfg.extract_steps + cfg.arith_steps:
            kind = "arith"
        else:
            kind = rng.choices(kinds, weights)[0]
        batch = []
        while len(batch) < cfg.batch_size:
            turns = next_turns(kind)
            if turns is not None:
                batch.append(encode(tokenizer, turns))
        yield collate(batch, tokenizer.pad_token_id)


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int):
    """(ids, labels, attention mask) tensors of encoded conversations, right-padded to the longest."""
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id)
    labels = torch.full((len(encoded), width), -100)
    for row, (x, y) in enumerate(encoded):
        ids[row, : len(x)], labels[row, : len(y)] = torch.tensor(x), torch.tensor(y)
    return ids, labels, (ids != pad_id).long()


def train_step(model, optimizer, schedule, batch, device: str = "cpu") -> float:
    """One SFT step on (ids, labels, mask): loss, backward, gradients clipped to norm 1, optimizer and schedule
    step; returns the loss."""
    ids, labels, mask = (t.to(device) for t in batch)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def training_identity(cfg: StudentConfig, task: str, generator: dict | None, exclude: set) -> dict:
    """What a saved training state must match to be resumed: the settings and the excluded rows' digest."""
    digest = hashlib.sha256("\n".join(sorted(map(repr, exclude))).encode()).hexdigest()[:16]
    # as JSON has it: student.json records it, and a tuple reads back as a list
    return json.loads(json.dumps({"config": asdict(cfg), "task": task, "generator": generator or {}, "exclude": digest}))


def recorded_identity(summary: dict) -> dict:
    """The training identity a saved student's student.json records, with any setting added to StudentConfig
    since it was saved filled with its default (which is how the student was trained)."""
    config = {**json.loads(json.dumps(asdict(StudentConfig()))), **(summary.get("config") or {})}
    return {"config": config, **summary.get("trained_on", {})}


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash while saving leaves the previous state whole


def _load_state(path: Path, identity: dict) -> dict | None:
    """The saved training state at `path`, or None; one saved with other settings is refused, not discarded."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("identity"):  # settings added since it was saved were at their defaults
        state["identity"] = {**state["identity"], **recorded_identity(state["identity"])}
    if state.get("identity") != identity:
        saved = state.get("identity") or {}
        differ = sorted(k for k in identity if k != "config" and saved.get(k) != identity[k])
        config = saved.get("config") or {}
        differ += sorted(f"config.{k}" for k in identity["config"].keys() | config.keys()
                         if config.get(k) != identity["config"].get(k))
        raise ValueError(f"{path} holds a student trained with other settings (differing: {', '.join(differ)}); "
                         "delete it to start this student over, or restore the settings to resume it")
    return state


def _reached(cfg: StudentConfig, checks: list[dict]) -> bool:
    """Whether the last check reached every stop rule the student has (none: never)."""
    rules = {k: v for k, v in (("first_try", cfg.stop_at_first_try), ("arithmetic", cfg.stop_at_arithmetic)) if v is not None}
    return bool(rules) and bool(checks) and all(checks[-1][k] >= v for k, v in rules.items())


def make_student(cfg: StudentConfig, out_dir: str | Path, exclude: set | None = None, task: str = "countdown",
                 generator: dict | None = None, check=None) -> dict:
    """Train the student of `task` (countdown, or function_calling with the data generator's settings
    `generator`) and save it (a model directory loadable by r3kit.models.loading) to out_dir. A training state left
    in out_dir by an interrupted run with the same settings is resumed (module docstring).
    `check(model, tokenizer) -> float`, if given, is the greedy first-try rate on validation rows; it (and, with
    cfg.stop_at_arithmetic, arithmetic_accuracy) runs every cfg.check_every steps after the extract and arith steps,
    and training stops once every stop rule is reached."""
    cfg.validate()
    if task not in TASKS:
        raise ValueError(f"the CPU student can learn {TASKS}, not {task!r}")
    if task == "countdown" and (cfg.mix_extract or cfg.extract_steps):
        raise ValueError("student.mix_extract and extract_steps are for the function-calling student; set them to 0 "
                         "for countdown")
    if task == "function_calling" and (cfg.mix_arith or cfg.arith_steps or cfg.reflection_style in SEARCHED
                                       or cfg.stop_at_arithmetic is not None):
        raise ValueError("student.mix_arith, arith_steps, stop_at_arithmetic and reflection_style 'recompute' or 'verify' "
                         "are for the countdown student; unset them for function calling")
    if cfg.stop_at_first_try is not None and check is None:
        raise ValueError("student.stop_at_first_try needs a validation check (pipeline.student_stage passes one)")
    if cfg.device == "cuda" and not torch.cuda.is_available():  # here, not in validate: a run set up for a GPU
        raise ValueError("student.device='cuda' needs a CUDA GPU; this machine has none")  # still resolves on a CPU
    exclude = exclude or set()
    state_path = Path(out_dir) / STATE_FILE
    identity = training_identity(cfg, task, generator, exclude)
    for stale in Path(out_dir).glob(f".{STATE_FILE}.tmp-*"):  # left by a crash while saving
        stale.unlink()
    state = _load_state(state_path, identity)  # before any model is built: a mismatch fails at once
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    positions, tokens = 512, ()
    if task == "function_calling":
        positions, tokens = student_calls.MAX_POSITIONS, student_calls.TOKENS
    model, tokenizer = build_char_model(cfg.hidden, cfg.layers, cfg.heads, max_positions=positions, seed=cfg.seed,
                                        extra_tokens=tokens)
    model.to(cfg.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    def decay(s: int) -> float:
        return 1.0 if cfg.lr_schedule == "constant" else 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * decay(s))
    batches = _batches(cfg, tokenizer, exclude, rng, task, generator)
    done, losses, earlier, checks = 0, [], 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])  # nothing draws from it today (no dropout); kept exact if that changes
        done, losses, earlier, checks = state["step"], list(state["losses"]), state["seconds"], list(state.get("checks", []))
        for _ in range(done):  # the data stream is replayed, not stored: the same batches an unbroken run sees
            next(batches)
    start = saved = time.perf_counter()
    bar = tqdm(range(done, cfg.steps), desc="student SFT", unit="step", initial=done, total=cfg.steps)
    stopped = _reached(cfg, checks)
    for step in bar:
        if stopped:
            break
        losses.append(train_step(model, optimizer, schedule, next(batches), cfg.device))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
        before = cfg.extract_steps + cfg.arith_steps  # checks count the steps after the single-kind phases
        checking = check is not None or cfg.stop_at_arithmetic is not None
        if checking and step + 1 > before and (step + 1 - before) % cfg.check_every == 0:
            checks.append({"step": step + 1})
            if check is not None:
                checks[-1]["first_try"] = check(model, tokenizer)
                print(f"student step {step + 1}: greedy first try {checks[-1]['first_try']:.1%} on validation", flush=True)
            if cfg.stop_at_arithmetic is not None:
                checks[-1]["arithmetic"] = arithmetic_accuracy(model, tokenizer, cfg)["accuracy"]
                print(f"student step {step + 1}: single operations {checks[-1]['arithmetic']:.1%} exact", flush=True)
            stopped = _reached(cfg, checks)
        if time.perf_counter() - saved >= CHECKPOINT_SECONDS and step + 1 < cfg.steps and not stopped:
            _save_state(state_path, {"identity": identity, "step": step + 1, "model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                                     "losses": losses, "seconds": earlier + time.perf_counter() - start,
                                     "torch_rng": torch.get_rng_state(), "checks": checks})
            saved = time.perf_counter()
    bar.close()
    model.cpu().eval()
    save_model(model, tokenizer, out_dir)
    arithmetic = arithmetic_accuracy(model, tokenizer, cfg) if task == "countdown" else None
    summary = {"config": asdict(cfg), "parameters": sum(p.numel() for p in model.parameters()),
               "final_loss": sum(losses[-100:]) / len(losses[-100:]), "wall_seconds": earlier + time.perf_counter() - start,
               "loss_curve": losses[:: max(1, len(losses) // 200)]}
    summary["trained_on"] = {k: v for k, v in identity.items() if k != "config"}  # task, generator, exclude digest
    if arithmetic is not None:
        summary["arithmetic"] = arithmetic  # greedy exact match on single operations (arithmetic_accuracy)
    summary["steps_trained"] = len(losses)  # below cfg.steps when a validation check stopped it
    if checks:
        summary["validation_checks"] = checks  # greedy first try on validation rows and/or arithmetic, by step
    for rule, measure in (("stop_at_first_try", "first_try"), ("stop_at_arithmetic", "arithmetic")):
        if getattr(cfg, rule) is not None:  # each rule on its own: with both set, training stops once both are met
            summary[f"reached_{rule}"] = bool(checks) and checks[-1][measure] >= getattr(cfg, rule)
    if done:
        summary["resumed_from_step"] = done
    write_json(Path(out_dir) / "student.json", summary)
    state_path.unlink(missing_ok=True)  # the student is whole: its training state is no longer needed
    return summary
