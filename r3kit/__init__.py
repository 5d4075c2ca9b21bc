"""r3kit: Reflect, Retry, Reward. The public API, imported on first use (so `import r3kit` stays light):

    Task, Verdict, get_task, register_task   tasks (r3kit.tasks): build the prompt, verify, phrase the turns
    run_episodes                             attempt, verify, reflect, retry, verify, batched (r3kit.core.episodes)
    make_rollout, make_reward                R3's rollout (one per arm) and reward, as TRL's hooks (r3kit.core.trainer)
    r3_for_trl                               R3's dataset, rollout_func and reward for your own GRPOTrainer
    resolve                                  a profile (a name or a YAML file) -> the validated RunConfig
    run_all                                  every stage of a run in this process (r3kit.runs.pipeline)
    reproduce                                every notebook of a run through papermill (r3kit.runs.reproduce)
"""

from __future__ import annotations

import importlib

from r3kit.infra.notebook import stderr_to_log

stderr_to_log()  # only in a kernel `r3kit reproduce` started: libraries' stderr to the run folder's logs/

_API = {"Task": "r3kit.tasks", "Verdict": "r3kit.tasks", "get_task": "r3kit.tasks", "register_task": "r3kit.tasks",
        "run_episodes": "r3kit.core.episodes", "make_rollout": "r3kit.core.trainer", "make_reward": "r3kit.core.trainer",
        "r3_for_trl": "r3kit.core.for_trl", "resolve": "r3kit.runs.profiles", "run_all": "r3kit.runs.pipeline",
        "reproduce": "r3kit.runs.reproduce"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'r3kit' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
