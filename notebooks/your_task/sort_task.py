"""A task of your own, as the kit sees it: sort a short list of integers.

Everything R3 needs from a task is here: the rows (`generate`, `key`), the prompts (`prompt_styles`), and a
verifier that reads only what it needs from the model's text and never runs it. A profile names this class as
"sort_task.py:SortTask" (a path relative to the profile file) or, once it is in a package, "mypkg.sort:SortTask".
"""

from __future__ import annotations

import random
import re

from r3kit import Task, Verdict
from r3kit.tasks.prompts import Prompts

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
INTEGERS = re.compile(r"-?\d+")


class SortTask(Task):
    name = "sort"
    columns = ("numbers",)
    prompt_styles = {
        "instruct": Prompts(
            task=("Sort these integers in ascending order: {numbers_text}. Give the sorted list alone inside "
                  "<answer> </answer> tags, separated by commas, for example <answer>1, 2, 3</answer>."),
            reflection_request=("Your answer is incorrect. Reflect on what went wrong: a missing or extra number, "
                                "a number out of order, or the format. Do not give a new answer yet."),
            retry_request="Now try again. Give the sorted list alone inside <answer> </answer> tags.",
            retry_without_reflection="Your answer is incorrect. Try again, inside <answer> </answer> tags.",
            generic_reflection="I made a mistake. I should check every number and the order again.",
        ),
        "compact": Prompts(task="sort {numbers_text}", reflection_request="wrong. reflect", retry_request="retry",
                           retry_without_reflection="wrong. retry", generic_reflection="think again"),
    }

    @staticmethod
    def generate(n: int, seed: int, min_len: int = 3, max_len: int = 5, high: int = 99) -> list[dict]:
        rng = random.Random(seed)
        return [{"numbers": [rng.randint(0, high) for _ in range(rng.randint(min_len, max_len))]} for _ in range(n)]

    @staticmethod
    def key(row: dict):
        return tuple(row["numbers"])

    def template_fields(self, example: dict) -> dict:
        return {"numbers_text": ", ".join(map(str, example["numbers"]))}

    def answer(self, completion: str) -> str | None:
        found = ANSWER.findall(str(completion))
        return found[-1].strip() if found else None

    def verify(self, completion: str, example: dict) -> Verdict:
        text = self.answer(completion)
        if text is None:
            return Verdict(False, "no <answer> tag")
        if re.fullmatch(r"[\s,\-\d]*", text) is None:
            return Verdict(False, "not a list of integers")
        given = [int(x) for x in INTEGERS.findall(text) if len(x) <= 6]  # int() of a huge digit string is slow
        want = sorted(int(x) for x in example["numbers"])
        if sorted(given) != want:
            return Verdict(False, f"not the given numbers ({len(given)} given, {len(want)} expected)")
        if given != want:
            return Verdict(False, "the given numbers, out of order")
        return Verdict(True, "correct")
