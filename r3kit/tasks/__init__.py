"""Task registry: `get_task("countdown")`, `get_task("function_calling")`, or any task you register."""

from __future__ import annotations

from r3kit.errors import UserError, did_you_mean
from r3kit.tasks.base import Message, Task, Verdict
from r3kit.tasks.countdown import CountdownTask
from r3kit.tasks.function_calling import FunctionCallingTask

_REGISTRY: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register a Task subclass under `cls.name` (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no `name`")
    if cls.verify is Task.verify:
        raise ValueError(f"task {cls.name!r} has no verifier: implement {cls.__name__}.verify")
    _REGISTRY[cls.name] = cls
    return cls


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str, style: str = "instruct", **prompt_overrides: str) -> Task:
    """The task called `name`, with prompt style `style` (see r3kit.prompts) and optional template overrides."""
    if isinstance(name, Task):
        return name
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}{did_you_mean(name, _REGISTRY)}; available: {task_names()}") from None
    return cls(style=style, **prompt_overrides)


register_task(CountdownTask)
register_task(FunctionCallingTask)

__all__ = ["Message", "Task", "Verdict", "get_task", "register_task", "task_names"]
