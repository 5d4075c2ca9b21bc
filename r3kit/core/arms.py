"""The arms a run trains, and the names their folders and evaluations go by.

    r3             R3: GRPO on the reflection, rewarded by the retry that follows it
    grpo           plain GRPO on first attempts at the same failed problems and budget
    retry_control  the retry-reward control: the reflection moves into the prompt, the retry is trained
A variant is an arm trained with one seed ("r3", "grpo-seed2"); its evaluation is named the same, except
R3's unseeded one, "trained", and the untrained model's, "vanilla".
"""

from __future__ import annotations

ARMS = ("r3", "grpo", "retry_control")
VARIANTS = ARMS  # the unseeded variants


def variant_name(arm: str, seed: int | None = None) -> str:
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    return arm if seed is None else f"{arm}-seed{seed}"


def evaluation_name(arm: str, seed: int | None = None) -> str:
    return "trained" if (arm, seed) == ("r3", None) else variant_name(arm, seed)


def parse_which(which: str) -> tuple[str | None, int | None]:
    """("vanilla" -> (None, None)), "trained" -> ("r3", None), "grpo-seed3" -> ("grpo", 3); else a ValueError."""
    if which == "vanilla":
        return None, None
    if which == "trained":
        return "r3", None
    arm, sep, seed = which.partition("-seed")
    if arm in ARMS and (seed.isdigit() if sep else arm != "r3"):
        parsed = (arm, int(seed) if sep else None)
        if evaluation_name(*parsed) == which:  # the one spelling ("r3-seed1", not "r3-seed01")
            return parsed
    raise ValueError(f"which must be 'vanilla', 'trained', an arm {ARMS[1:]} or '<arm>-seed<N>', got {which!r}")
