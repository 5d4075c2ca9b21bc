"""One name and one colour for every model and every retry condition, shared by each figure and table.

A model keeps its name and colour in every figure: grey for vanilla, then one strong hue per trained arm. Retry
conditions (first try, retry after the own, no or the generic reflection) are shades of green, a hue no model
uses, so a colour never means a model in one figure and a condition in another. The records name an arm three
ways (the study and the training folders: "r3"; metrics.json: "trained"; TrainConfig.reward_target: the turn it
rewards); `arm()` maps each to the one key, and a model chosen at another checkpoint ("trained-last") keeps its
arm's colour.
"""

from __future__ import annotations

import re

ARMS = {  # key: (name, what it rewards, colour)
    "vanilla": ("vanilla", "no training", "#8c8c8c"),
    "r3": ("R3", "reward on the reflection", "#1f6fb2"),
    "grpo": ("plain GRPO", "reward on the first attempt", "#e07b00"),
    "retry_control": ("retry control", "reward on the retry", "#8e44ad"),
}
ALIASES = {"trained": "r3", "reflection": "r3", "attempt": "grpo", "retry": "retry_control"}
CONDITIONS = {  # metrics.json column: (name, colour)
    "first_try": ("first try", "#c7e9c0"),
    "second_try": ("second try, own reflection", "#1b7837"),
    "retry_no_reflection": ("second try, no reflection", "#74c476"),
    "retry_generic_reflection": ("second try, generic reflection", "#a1d99b"),
}
SIGNIFICANT, NOT_SIGNIFICANT, ESTIMATE = "#1f6fb2", "#a0a0a0", "#c0392b"  # intervals that exclude 0, those that do not


def arm(key: str) -> str:
    """The arm's key for any name the records give it ("trained", "reflection", "trained-last", "r3")."""
    base = key.removesuffix("-last")
    base = ALIASES.get(base, base)
    if base not in ARMS:
        raise KeyError(f"no arm is named {key!r}; the arms are {sorted(ARMS)} (also {sorted(ALIASES)})")
    return base


def name(key: str, rewards: bool = False) -> str:
    """The arm's name ("R3"), or with `rewards` its name and what it rewards ("R3 (reward on the reflection)")."""
    label, what, _ = ARMS[arm(key)]
    return f"{label} ({what})" if rewards and key != "vanilla" else label


def colour(key: str) -> str:
    return ARMS[arm(key)][2]


def in_words(key: str) -> str:
    """A comparison as study.json names it, in words: "r3 - grpo: second_try_last" -> "R3 − plain GRPO: second try
    (last weights)"."""
    words = re.sub(r"\b(retry_control|vanilla|grpo|r3)\b", lambda m: name(m.group(1)), key)
    words = words.replace("second_try_last", "second try (last weights)").replace(" - ", " − ")
    return words.replace("_", " ")
