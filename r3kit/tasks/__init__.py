"""Task registry: `get_task("countdown")`, `get_task("function_calling")`, or a task of your own.

Your own task reaches every process the kit starts (papermill kernels, `r3kit run`, launched ranks) when a
profile names it by where it lives, since each process resolves the profile again:
    "mypkg.tasks:SortTask"         a class in an importable module
    "path/to/sort_task.py:SortTask"  a class in a file (a profile file's relative paths are read from its folder)
    "sort"                         a name an installed package declares in the entry-point group "r3kit.tasks"
                                   (pyproject: [project.entry-points."r3kit.tasks"] sort = "mypkg.tasks:SortTask")
A class loaded this way is checked like `register_task` checks it: a Task subclass with a name and a verifier,
and (`check_verifier`) a verifier that returns a Verdict, without raising, on malformed output.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path

from r3kit.infra.errors import UserError, did_you_mean
from r3kit.tasks.base import Message, Task, Verdict
from r3kit.tasks.countdown import CountdownTask
from r3kit.tasks.function_calling import FunctionCallingTask

_REGISTRY: dict[str, type[Task]] = {}
ENTRY_POINT_GROUP = "r3kit.tasks"


def register_task(cls: type[Task]) -> type[Task]:
    """Register a Task subclass under `cls.name` (usable as a decorator)."""
    if not isinstance(cls, type) or not issubclass(cls, Task):
        raise UserError(f"{cls!r} is not a Task subclass (from r3kit import Task; class MyTask(Task): ...)")
    if not cls.name:
        raise UserError(f"{cls.__name__} has no `name`")
    if cls.verify is Task.verify:
        raise UserError(f"task {cls.name!r} has no verifier: implement {cls.__name__}.verify")
    for attribute in ("generate", "key"):  # called on the class, by the data loaders
        raw = inspect.getattr_static(cls, attribute, None)
        if callable(raw) and not isinstance(raw, (staticmethod, classmethod)):
            raise UserError(f"{cls.__name__}.{attribute} must be a @staticmethod (or @classmethod): the kit calls it "
                            "on the class")
    earlier = _REGISTRY.get(cls.name)
    if earlier is not None and earlier is not cls and earlier.__module__.startswith("r3kit."):
        raise UserError(f"task name {cls.name!r} is one of the kit's own tasks: give {cls.__name__} another name")
    _REGISTRY[cls.name] = cls
    return cls


def _installed() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    return sorted({*_REGISTRY, *_installed()})


def is_import_path(name: str) -> bool:
    return isinstance(name, str) and ":" in name


def _import_module(where: str):
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise UserError(f"task file {where} does not exist")
        module_name = "r3kit_user_task_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        if module_name in sys.modules:
            return sys.modules[module_name]
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # as when the file runs as a script: it can import the files beside it
            sys.path.append(folder)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            sys.modules.pop(module_name, None)
            raise UserError(f"task file {where} failed to import: {type(error).__name__}: {error}") from error
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as error:
        raise UserError(f"task module {where!r} cannot be imported ({error}): install its package, or run from the "
                        "folder that holds it, or name its file instead (path/to/file.py:Class)") from None
    except Exception as error:
        raise UserError(f"task module {where!r} failed to import: {type(error).__name__}: {error}") from error


def load_task_class(path: str) -> type[Task]:
    """The Task subclass at `module:Class` or `file.py:Class`, checked and registered under its name."""
    where, _, attribute = path.rpartition(":")
    module = _import_module(where)
    cls = getattr(module, attribute, None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Task) and v is not Task]
        raise UserError(f"{where} has no {attribute!r}{did_you_mean(attribute, names)}; its tasks: {names or 'none'}")
    return register_task(cls)


def task_class(name: str) -> type[Task]:
    """The Task subclass a profile's `task` names: registered, an import path, or an installed entry point."""
    if isinstance(name, type) and issubclass(name, Task):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_import_path(name):
        return load_task_class(name)
    installed = _installed()
    if name in installed:
        return load_task_class(installed[name])
    raise UserError(f"unknown task {name!r}{did_you_mean(name, task_names())}; available: {task_names()}, or name "
                    "your own by its import path (mypkg.tasks:MyTask or path/to/file.py:MyTask)")


def get_task(name: str, style: str = "instruct", **prompt_overrides: str) -> Task:
    """The task called `name`, with prompt style `style` (see r3kit.tasks.prompts) and optional template overrides."""
    if isinstance(name, Task):
        return name
    return task_class(name)(style=style, **prompt_overrides)


MALFORMED_OUTPUTS = ("", " ", "<answer>", "</answer><answer>", "<answer></answer>", "{", "]", "null", "None",
                     "<answer>1/0</answer>", "<answer>__import__('os').system('true')</answer>", "\x00\ufffd",
                     "9" * 400, "<tool_call>[{\"name\": 1}]</tool_call>", "[[[[", "NaN", "-1e309")


def check_verifier(task: Task, example: dict) -> None:
    """A UserError when the task's verifier raises on, or returns anything but a Verdict for, malformed model
    output (checked when a run is resolved, before any model loads)."""
    for text in MALFORMED_OUTPUTS:
        try:
            verdict = task.verify(text, example)
        except Exception as error:
            raise UserError(f"task {task.name!r}: verify() raised {type(error).__name__}: {error} on the model output "
                            f"{text[:40]!r}; a verifier must return Verdict(False, reason) for output it cannot read"
                            ) from error
        if not isinstance(verdict, Verdict):
            raise UserError(f"task {task.name!r}: verify() returned {type(verdict).__name__} for {text[:40]!r}, not a "
                            "Verdict(ok, reason)")


register_task(CountdownTask)
register_task(FunctionCallingTask)

__all__ = ["Message", "Task", "Verdict", "check_verifier", "get_task", "register_task", "task_class", "task_names"]
