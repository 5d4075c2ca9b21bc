"""Countdown equation writing (TinyZero's task): reach `target` using every number in `nums` once.

Verifier (TinyZero's rule, evaluated safely):
  1. take the text inside the LAST <answer>...</answer> pair;
  2. it may contain only digits, + - * /, parentheses and white space (so no `**`, no decimals);
  3. the numbers written must be exactly the multiset `nums` (each once, no others);
  4. its value, computed over exact fractions by a small recursive-descent parser (never `eval`),
     must equal `target` within 1e-5. Division by zero is a failed verdict.
Bounds keep any input cheap: at most 512 characters in the answer, 32 levels of nesting (parentheses
and unary signs), 12 digits per number. Unary + and - are accepted, as Python's eval in TinyZero does.

Solver: depth-first search over "pick two numbers, combine them with + - * / (both orders), recurse",
in float arithmetic with duplicate states pruned, then an exact re-check of the found equation with the
verifier, so a float coincidence can never produce a wrong solution. With an `rng` the search order is
shuffled, which gives a random solution instead of always the first. It writes the oracle reflection: the
attempt's first fault (diagnose), then a solution's steps with their values.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction
from typing import Any

from r3kit.tasks.base import Task, Verdict

MAX_ANSWER_CHARS = 512
MAX_DEPTH = 32
MAX_DIGITS = 12
TOLERANCE = Fraction(1, 100_000)

_ALLOWED = re.compile(r"[0-9+\-*/()\s]*")
_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


class _Reject(Exception):
    """Internal: the expression is not acceptable; the message is the verdict's reason."""


def extract_answer(completion: str) -> str | None:
    """The content of the last <answer>...</answer> pair, or None."""
    end = completion.rfind("</answer>")
    if end < 0:
        return None
    start = completion.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return completion[start + len("<answer>") : end]


def _tokens(text: str) -> list[str]:
    out = []
    for number, symbol in _TOKEN.findall(text):
        if number:
            if len(number) > MAX_DIGITS:
                raise _Reject(f"number with more than {MAX_DIGITS} digits")
            out.append(number)
        elif symbol.strip():
            out.append(symbol)
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := ('+'|'-') factor | NUMBER | '(' expr ')'"""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.pos = 0
        self.numbers: list[int] = []

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Fraction:
        if not self.tokens:
            raise _Reject("empty answer")
        value = self.expr(0)
        if self.peek() is not None:
            raise _Reject(f"unexpected {self.peek()!r}")
        return value

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term(depth)
            value = value + right if op == "+" else value - right
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            if self.peek() == "*" and op == "*":
                raise _Reject("'**' is not allowed")
            right = self.factor(depth)
            if op == "*":
                value = value * right
            elif right == 0:
                raise _Reject("division by zero")
            else:
                value = value / right
        return value

    def factor(self, depth: int) -> Fraction:
        if depth >= MAX_DEPTH:
            raise _Reject(f"nesting deeper than {MAX_DEPTH}")
        token = self.peek()
        if token is None:
            raise _Reject("expression ends early")
        if token in ("+", "-"):
            self.take()
            value = self.factor(depth + 1)
            return value if token == "+" else -value
        if token == "(":
            self.take()
            value = self.expr(depth + 1)
            if self.peek() != ")":
                raise _Reject("unbalanced parentheses")
            self.take()
            return value
        if token.isdigit():
            self.take()
            self.numbers.append(int(token))
            return Fraction(int(token))
        raise _Reject(f"unexpected {token!r}")


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """Value and numbers of an arithmetic expression; raises ValueError with the reason if rejected."""
    try:
        parser = _Parser(_tokens(text))
        return parser.parse(), parser.numbers
    except _Reject as reject:
        raise ValueError(str(reject)) from None


# a single operation, not the tail of a chain ("2+3+4=9") or of a decimal; a sentence may end after it ("=12.")
_OPERATION = re.compile(r"(?<![\d.+\-*/])(\d{1,6})\s*([+\-*/])\s*(\d{1,6})\s*=\s*(-?\d{1,7})(?!\d|\.\d)")


def operations(text: str) -> list[tuple[int, str, int, int, Fraction | None]]:
    """Each single operation written as "a op b = c" in `text` (worked steps, a reflection's recomputed values),
    in order, as (a, op, b, claimed c, true value; None for a division by zero)."""
    out = []
    for a, op, b, claimed in _OPERATION.findall(text[:20_000]):
        x, y = Fraction(int(a)), Fraction(int(b))
        true = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else None}[op]
        out.append((int(a), op, int(b), int(claimed), true))
    return out


def written_operations(text: str) -> list[bool]:
    """Whether each single operation written out in `text` is right (a division by zero never is)."""
    return [true == claimed for _, _, _, claimed, true in operations(text)]


def _shown(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"


def diagnose(attempt: str, nums: list[int], target: int | float) -> tuple[str, str | None]:
    """What is wrong with a failed Countdown attempt, recomputed from its own text, and its first step rewritten
    with its true value (what a fix can keep), or None where it has no whole-valued first step:
        no equation            "no equation."                        (no <answer> tag)
        not an expression      "(9+ is not valid."
        misused numbers        "9 twice, 7 unused."  /  "8 not given."
        a wrong step           "9+7=16 not 15."                      (the first step whose value is wrong)
        else                   "(9-7)*3=6 not 48."                   (the equation's value against the target)
    Never raises: any text gets a diagnosis."""
    text = attempt if isinstance(attempt, str) else ""
    steps = operations(text)
    first = None
    if steps and steps[0][4] is not None and steps[0][4].denominator == 1 and steps[0][4] >= 0:
        a, op, b, _, true = steps[0]
        first = f"{a}{op}{b}={true.numerator}"
    equation = extract_answer(text)
    if equation is None:
        return "no equation.", first
    if len(equation) > MAX_ANSWER_CHARS:
        return f"the equation is longer than {MAX_ANSWER_CHARS} characters.", first
    try:
        if not _ALLOWED.fullmatch(equation) or "**" in re.sub(r"\s+", "", equation):
            raise ValueError(equation)
        value, used = evaluate_expression(equation)
    except ValueError:
        return f"{equation.strip()[:40] or 'the empty equation'} is not valid.", first
    given, written = Counter(int(n) for n in nums), Counter(used)
    if written != given:
        times = {2: "twice", 3: "three times"}
        parts = [(f"{n} {times.get(written[n], f'{written[n]} times')}" if given[n] else f"{n} not given")
                 for n in sorted(written - given)]
        parts += [f"{n} unused" + (f" {times.get(k, f'{k} times')}" if k > 1 else "")
                  for n, k in sorted((given - written).items())]
        return ", ".join(parts) + ".", first
    for a, op, b, claimed, true in steps:
        if true != claimed:
            return f"{a}{op}{b}={_shown(true) if true is not None else 'undefined'} not {claimed}.", first
    return f"{equation.strip()}={_shown(value)} not {_shown(Fraction(target))}.", first


def check_equation(answer: str, nums: list[int], target: int | float) -> Verdict:
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(False, f"answer longer than {MAX_ANSWER_CHARS} characters")
    if not _ALLOWED.fullmatch(answer):
        bad = next(ch for ch in answer if not _ALLOWED.fullmatch(ch))
        return Verdict(False, f"illegal character {bad!r}")
    if "**" in re.sub(r"\s+", "", answer):
        return Verdict(False, "'**' is not allowed")
    try:
        value, used = evaluate_expression(answer)
    except ValueError as error:
        return Verdict(False, str(error))
    if Counter(used) != Counter(int(n) for n in nums):
        extra = Counter(used) - Counter(int(n) for n in nums)
        missing = Counter(int(n) for n in nums) - Counter(used)
        parts = [f"extra {sorted(extra.elements())}" if extra else "", f"unused {sorted(missing.elements())}" if missing else ""]
        return Verdict(False, "numbers do not match: " + ", ".join(p for p in parts if p))
    if abs(value - Fraction(target)) > TOLERANCE:
        shown = value.numerator if value.denominator == 1 else round(float(value), 4)
        return Verdict(False, f"value {shown} is not the target {target}")
    return Verdict(True, "correct")


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _apply(a: float, op: str, b: float) -> float | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if abs(b) > 1e-12 else None


def format_tree(node) -> tuple[str, int]:
    """Text and precedence of an expression tree (an int, or (op, left, right)) with minimal parentheses."""
    if isinstance(node, int):
        return str(node), 3
    op, left, right = node
    (a_text, a_prec), (b_text, b_prec) = format_tree(left), format_tree(right)
    prec = _PREC[op]
    if a_prec < prec:
        a_text = f"({a_text})"
    if b_prec < prec or (b_prec == prec and op in "-/"):
        b_text = f"({b_text})"
    return f"{a_text} {op} {b_text}", prec


def solution_tree(nums: list[int], target: float, rng: random.Random | None = None):
    """An expression tree (an int, or (op, left, right)) using every number of `nums` once that equals `target`,
    or None if there is none."""
    seen: set[tuple[float, ...]] = set()

    def search(items: list[tuple[float, object]]) -> str | None:
        state = tuple(sorted(round(v, 9) for v, _ in items))
        if state in seen:
            return None
        seen.add(state)
        pairs = [(i, j) for i in range(len(items)) for j in range(len(items)) if i != j]
        ops = ["+", "-", "*", "/"]
        if rng is not None:
            rng.shuffle(pairs)
            rng.shuffle(ops)
        for i, j in pairs:
            (a, a_node), (b, b_node) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k != i and k != j]
            for op in ops:
                if op in "+*" and i > j and rng is None:
                    continue  # commutative: the (j, i) order already covers it
                value = _apply(a, op, b)
                if value is None:
                    continue
                node = (op, a_node, b_node)
                if not rest:
                    if abs(value - target) < 1e-6:
                        if check_equation(format_tree(node)[0], nums, target).ok:
                            return node
                elif (found := search(rest + [(value, node)])) is not None:
                    return found
        return None

    if len(nums) == 1:
        return int(nums[0]) if check_equation(str(nums[0]), nums, target).ok else None
    return search([(float(n), int(n)) for n in nums])


def solve(nums: list[int], target: float, rng: random.Random | None = None) -> str | None:
    """An equation using every number of `nums` once that equals `target` ("(49 - 37) * 5"), or None."""
    node = solution_tree(nums, target, rng)
    return None if node is None else format_tree(node)[0]


def worked_steps(node) -> list[str]:
    """The single operations of an expression tree, innermost first, with their true values ("49-37=12")."""
    if isinstance(node, int):
        return []
    op, left, right = node
    steps = worked_steps(left) + worked_steps(right)
    value = evaluate_expression(format_tree(node)[0])[0]
    a, b = (evaluate_expression(format_tree(side)[0])[0] for side in (left, right))
    return steps + [f"{_shown(a)}{op}{_shown(b)}={_shown(value)}"]



class CountdownTask(Task):
    name = "countdown"
    columns = ("target", "nums")

    def verify(self, completion: Any, example: dict) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(False, f"completion is {type(completion).__name__}, not text")
        answer = extract_answer(completion)
        if answer is None:
            return Verdict(False, "no <answer> tag")
        return check_equation(answer, list(example["nums"]), example["target"])

    def answer(self, completion: str) -> str | None:
        return extract_answer(completion) if isinstance(completion, str) else None

    def operations(self, completion: str) -> list[bool] | None:
        return written_operations(completion) if isinstance(completion, str) else None

    def read_reflection(self, example: dict, attempt: str, reflection: str) -> dict[str, Any] | None:
        """How a reflection on a failed attempt reads: whether its written values are right, whether it opens
        with the attempt's fault (diagnose), whether the equation it concludes with (after its last " so ")
        verifies, and whether that conclusion repeats the failed equation."""
        if not isinstance(reflection, str) or not isinstance(attempt, str):
            return None
        checks = written_operations(reflection)
        fault, _ = diagnose(attempt, list(example["nums"]), example["target"])
        conclusion = reflection.rsplit(" so ", 1)[1].strip() if " so " in reflection else None
        failed = (extract_answer(attempt) or "").strip()
        return {"values_right": sum(checks) / len(checks) if checks else None,
                "names_the_fault": reflection.strip().startswith(fault),
                "conclusion_verifies": conclusion is not None
                and check_equation(conclusion, list(example["nums"]), example["target"]).ok,
                "repeats_failed": conclusion is not None and bool(failed) and conclusion.replace(" ", "") == failed.replace(" ", "")}

    def oracle_reflection(self, example: dict, attempt: str) -> str | None:
        """The solver's reflection: the attempt's fault, then a solution worked out step by step, in the form
        a recompute-style student writes ("9+7=16 not 15. 9+7=16,16*3=48 so (9+7)*3")."""
        nums, target = list(example["nums"]), example["target"]
        node = solution_tree(nums, target)
        if node is None:
            return None
        fault, _ = diagnose(attempt, nums, target)
        steps = ",".join(worked_steps(node))
        return f"{fault} {steps + ' ' if steps else ''}so {format_tree(node)[0].replace(' ', '')}"

    def validate_example(self, example: dict) -> None:
        super().validate_example(example)
        nums, target = example["nums"], example["target"]
        if not isinstance(nums, (list, tuple)) or not nums or not all(isinstance(n, int) and n >= 0 for n in nums):
            raise ValueError(f"countdown example needs `nums` as a non-empty list of non-negative ints, got {nums!r}")
        if not isinstance(target, (int, float)) or isinstance(target, bool):
            raise ValueError(f"countdown example needs a numeric `target`, got {target!r}")

    def difficulty(self, example: dict) -> str:
        return f"{len(example['nums'])} numbers"

    def template_fields(self, example: dict) -> dict[str, Any]:
        nums = list(example["nums"])
        return {"nums": nums, "nums_spaced": " ".join(str(n) for n in nums), "target": example["target"]}
