"""Every piece of prompt text r3kit sends to a model, in one place.

The paper's prompts were not published, so these are our own. A `Prompts` is a named set of templates
for one task; a task formats them with fields of the example (`{nums}`, `{target}`, `{query}`, `{tools}`).

The episode they build (see core/episodes.py):
    user       task prompt                      <- Prompts.task (+ Prompts.system, if any)
    assistant  first attempt
    user       "that was wrong, reflect"        <- Prompts.reflection_request (binary feedback only)
    assistant  self-reflection                  <- the tokens R3 rewards
    user       "now try again"                  <- Prompts.retry_request
    assistant  retry

Two controls the paper lacked replace the middle turns:
    retry without reflection: ... attempt, user Prompts.retry_without_reflection, assistant retry
    generic reflection:       ... attempt, user reflection_request, assistant Prompts.generic_reflection, ...

Styles: "instruct" for real chat models; "compact" for the character-level student the kit trains
itself (short turns keep its sequences short). Register more with `register_prompts`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Prompts:
    task: str
    reflection_request: str
    retry_request: str
    retry_without_reflection: str
    generic_reflection: str
    system: str | None = None

    def with_overrides(self, **overrides: str) -> Prompts:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown prompt field(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)


_GENERIC_REFLECTION = (
    "I made a mistake. I should read the task again carefully, check each step of my answer "
    "against the requirements, and make sure the final answer has the requested format."
)

_PROMPTS: dict[tuple[str, str], Prompts] = {
    ("countdown", "instruct"): Prompts(
        task=(
            "Using the numbers {nums}, create an equation that equals {target}. You may use +, -, * and / "
            "and parentheses, and you must use every number exactly once. Think briefly, then give the "
            "equation alone inside <answer> </answer> tags, for example <answer>(1 + 2) * 3</answer>."
        ),
        reflection_request=(
            "Your answer is incorrect. Reflect on what went wrong in your previous attempt: identify the "
            "mistake and say how to avoid it. Do not give a new answer yet."
        ),
        retry_request=(
            "Now try again. Give the equation alone inside <answer> </answer> tags."
        ),
        retry_without_reflection=(
            "Your answer is incorrect. Try again. Give the equation alone inside <answer> </answer> tags."
        ),
        generic_reflection=_GENERIC_REFLECTION,
    ),
    ("countdown", "compact"): Prompts(
        task="{nums_spaced} = {target}",
        reflection_request="wrong. reflect",
        retry_request="retry",
        retry_without_reflection="wrong. retry",
        generic_reflection="think again",
    ),
    ("function_calling", "instruct"): Prompts(
        system=(
            "You are an expert in composing function calls. You are given a question and a set of possible "
            "functions. Based on the question, make one or more function calls to achieve the purpose. "
            "Answer with a JSON list of calls, each {{\"name\": ..., \"arguments\": {{...}}}}, inside "
            "<tool_call> </tool_call> tags, and nothing else.\n\nAvailable functions:\n{tools}"
        ),
        task="{query}",
        reflection_request=(
            "Your function call(s) are incorrect. Reflect on what went wrong: the choice of function, the "
            "argument names, the argument values or the number of calls. Do not give new calls yet."
        ),
        retry_request="Now try again. Answer with the JSON list of calls inside <tool_call> </tool_call> tags.",
        retry_without_reflection=(
            "Your function call(s) are incorrect. Try again. Answer with the JSON list of calls inside "
            "<tool_call> </tool_call> tags."
        ),
        generic_reflection=_GENERIC_REFLECTION,
    ),
    ("function_calling", "compact"): Prompts(  # the CPU student's: the calls as a bare JSON list
        task="{tools_brief}\n{query}",
        reflection_request="wrong. reflect",
        retry_request="retry",
        retry_without_reflection="wrong. retry",
        generic_reflection="think again",
    ),
}


def register_prompts(task: str, style: str, prompts: Prompts) -> None:
    """Add (or replace) the prompt set `style` for `task`."""
    _PROMPTS[(task, style)] = prompts


def styles(task: str) -> list[str]:
    return sorted(style for (name, style) in _PROMPTS if name == task)


def get_prompts(task: str, style: str = "instruct") -> Prompts:
    try:
        return _PROMPTS[(task, style)]
    except KeyError:
        raise ValueError(
            f"no prompt style {style!r} for task {task!r}; available: {styles(task) or 'none'}"
        ) from None
