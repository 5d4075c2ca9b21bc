"""What a task is: a verifiable problem family R3 can train on.

A task turns a dataset row (`example`, a dict with the hub dataset's columns) into the first-attempt
conversation, checks a completion with a binary verifier, and supplies the feedback turns of the episode
(reflection request, retry request, and the two control turns). Prompt text comes from r3kit.tasks.prompts,
so a task only decides which example fields fill the templates.

To add a task: subclass `Task`, set `name` and `columns`, implement `verify` (and `template_fields` if
the templates need more than the raw columns), give its prompts (`prompt_styles`, or r3kit.tasks.prompts'
`register_prompts`) and, for offline runs, its rows (`generate` and `key`; otherwise a data file or
`hub_id`). Name it in a profile by its import path (r3kit.tasks). Nothing else in the kit changes:
rollout, mining, evaluation and training only talk to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from r3kit.tasks.prompts import Prompts, get_prompts

Message = dict[str, str]


def mask_particulars(reason: str) -> str:
    import re

    reason = re.sub(r"\[[^\]]*\]", "[..]", str(reason))
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'..'", reason)
    return re.sub(r"-?\d+(\.\d+)?", "N", reason)


@dataclass(frozen=True)
class Verdict:
    """A binary verdict and a short human-readable reason ("correct", "no <answer> tag", ...)."""

    ok: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason}


class Task:
    name: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    failure_categories: ClassVar[tuple[str, ...]] = ()  # what reason_category returns, if a fixed set (figures)
    prompt_styles: ClassVar[dict[str, Prompts]] = {}  # a task's own prompts by style (else r3kit.tasks.prompts' registry)
    hub_id: ClassVar[str | None] = None  # a hub dataset with the task's columns (data.source="hub")

    # Rows for offline runs (data.source="generate"): a task that defines `generate` needs no data file.
    # generate(n, seed) -> n rows (dicts with `columns`), deterministic under seed; key(row) -> what makes two
    # rows the same problem (the splits never share a key).
    generate = None

    @staticmethod
    def key(row: dict):
        return repr(sorted(row.items()))

    def __init__(self, style: str = "instruct", prompts: Prompts | None = None, **prompt_overrides: str):
        if prompts is not None:
            base = prompts
        elif style in self.prompt_styles:
            base = self.prompt_styles[style]
        elif self.prompt_styles:
            raise ValueError(f"no prompt style {style!r} for task {self.name!r}; available: {sorted(self.prompt_styles)}")
        else:
            base = get_prompts(self.name, style)
        self.style = style
        self.prompts = base.with_overrides(**prompt_overrides) if prompt_overrides else base

    # ---- the verifier -------------------------------------------------------------------------------
    def verify(self, completion: str, example: dict) -> Verdict:
        """Binary check of a model completion. Must never raise on any completion text."""
        raise NotImplementedError

    def answer(self, completion: str) -> str | None:
        """The final answer a completion gives (for the copy measure), or None; optional for a task."""
        return None

    def operations(self, completion: str) -> list[bool] | None:
        """Whether each single operation a completion writes out ("49-37=12") is right, for the arithmetic
        precondition (r3kit.eval.preconditions); None for a task that writes none. Optional for a task."""
        return None

    def read_reflection(self, example: dict, attempt: str, reflection: str) -> dict[str, Any] | None:
        """How a reflection on a failed attempt reads, as properties (r3kit.eval.evaluate.READ_REFLECTION:
        values_right as a share or None, the rest as booleans), for the preconditions and reports; None for a task
        that cannot read its reflections. Optional for a task; must never raise on any text."""
        return None

    def oracle_reflection(self, example: dict, attempt: str) -> str | None:
        """A reflection written by the task's own solver on a failed attempt (the upper bound on what a reflection
        can carry, r3kit.eval.evaluate.oracle_reflection), or None for a task without a solver. Optional."""
        return None

    def validate_example(self, example: dict) -> None:
        """Raise ValueError naming the problem if `example` is not a usable row of this task."""
        missing = [c for c in self.columns if c not in example]
        if missing:
            raise ValueError(f"{self.name} example is missing column(s) {missing}; it has {sorted(example)}")

    def reason_category(self, reason: str) -> str:
        """The verifier's reason with its particulars masked (numbers -> N, [lists] -> [..], 'quotes' -> '..'),
        so reasons can be counted by kind; a task may group them its own way."""
        return mask_particulars(reason)

    def difficulty(self, example: dict) -> str:
        """A coarse bucket label used to break accuracy down by difficulty."""
        return "all"

    # ---- conversation turns ---------------------------------------------------------------------------
    def template_fields(self, example: dict) -> dict[str, Any]:
        return {c: example[c] for c in self.columns}

    def first_messages(self, example: dict) -> list[Message]:
        values = self.template_fields(example)
        messages: list[Message] = []
        if self.prompts.system:
            messages.append({"role": "system", "content": self.prompts.system.format(**values)})
        messages.append({"role": "user", "content": self.prompts.task.format(**values)})
        return messages

    def reflection_request(self) -> Message:
        return {"role": "user", "content": self.prompts.reflection_request}

    def retry_request(self) -> Message:
        """The retry turn. It carries no example fields: the problem is already in the conversation."""
        return {"role": "user", "content": self.prompts.retry_request}

    def retry_without_reflection(self) -> Message:
        return {"role": "user", "content": self.prompts.retry_without_reflection}

    def generic_reflection(self) -> Message:
        return {"role": "assistant", "content": self.prompts.generic_reflection}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(style={self.style!r})"
