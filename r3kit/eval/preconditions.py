"""R3's preconditions, measured before any R3 training: can a reflection help here, and will GRPO see it?

On the validation split, with the vanilla model:
  1. first attempts as evaluation decodes them (greedy by default); keep the failed ones
  2. each failure gets a group of G reflections sampled as training samples them, each followed by the retry
     decoded as training decodes it (r3kit.core.trainer.reflect_then_retry): k of the G retries pass
  3. the same failures retried after no reflection and after the generic reflection, as evaluation does
Then:
  own vs no / generic reflection   mean k/G against the control's 0/1, paired by failure (95% t interval,
                                   two-sided p; r3kit.eval.stats.paired_difference)
  rescue rate p                    mean k/G over the failures
  groups with signal               share of groups with 0 < k < G: their rewards vary, so GRPO has a gradient;
                                   beside it 1 - p^G - (1-p)^G, the share if every failure had the same p
  arithmetic                       for a task that writes single operations out (Countdown's worked steps): the
                                   share of those written in first attempts and in reflections that are right
  reflections read                 for a task that can read a reflection (Task.read_reflection; Countdown): the
                                   share of sampled reflections whose values are right, that name the attempt's
                                   fault, that conclude with an equation that verifies, that repeat the failed one
The gate passes when the own reflection beats both controls by at least `min_gain` (point estimates) and at
least `min_signal` of the groups carry signal. A run that misses it continues by default and its reports name
what failed: such a run tests R3 where a reflection cannot help, not whether R3 teaches reflection.
`on_fail="stop"` stops before any training instead. A run without a validation split records "not measured".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from r3kit.core.episodes import EpisodeConfig, first_attempts, reflection_conversation, second_turns
from r3kit.core.trainer import TrainConfig, reflect_then_retry
from r3kit.eval.evaluate import READ_REFLECTION, read_reflections
from r3kit.eval.stats import paired_difference, proportion

CONTROLS = ("no_reflection", "generic_reflection")
ON_FAIL = ("continue", "stop")


@dataclass
class PreconditionsConfig:
    n_examples: int | None = None  # validation problems to measure on (None: the whole validation split)
    min_gain: float = 0.05  # own reflection's retry success above each control's, at least (0.05 = 5 points)
    min_signal: float = 0.5  # share of GRPO groups whose rewards vary, at least
    on_fail: str = "continue"  # "continue": train and label the result; "stop": no training after a failed gate

    def validate(self) -> None:
        if self.on_fail not in ON_FAIL:
            raise ValueError(f"preconditions.on_fail must be one of {ON_FAIL}, got {self.on_fail!r}")
        if self.n_examples is not None and self.n_examples < 1:
            raise ValueError(f"preconditions.n_examples must be >= 1 or None, got {self.n_examples}")
        if not -1 <= self.min_gain <= 1 or not 0 <= self.min_signal <= 1:
            raise ValueError(f"preconditions.min_gain must lie in [-1, 1] and min_signal in [0, 1], got "
                             f"{self.min_gain} and {self.min_signal}")


def check_names(cfg: PreconditionsConfig) -> dict[str, str]:
    """The gate's checks, by key, in words."""
    return {"own_vs_no_reflection": f"own reflection beats no reflection by >= {100 * cfg.min_gain:g} points",
            "own_vs_generic_reflection": f"own reflection beats the generic reflection by >= {100 * cfg.min_gain:g} points",
            "groups_with_signal": f">= {100 * cfg.min_signal:g}% of GRPO groups carry signal"}


def not_measured(cfg: PreconditionsConfig, reason: str) -> dict[str, Any]:
    return {"measured": False, "reason": reason, "passed": None, "failed": [], "settings": dataclasses.asdict(cfg)}


def _operations(task, texts: list[str]) -> dict[str, Any] | None:
    checks = [ok for text in texts for ok in (task.operations(text) or [])]
    return proportion(sum(checks), len(checks)) if checks else None


def measure(generator, task, rows: list[dict], episode: EpisodeConfig, train: TrainConfig, cfg: PreconditionsConfig,
            progress: bool = True) -> tuple[dict[str, Any], list[dict]]:
    """The gate on `rows` (validation problems) with `generator` (the vanilla model): (record, transcripts),
    one transcript per failed first attempt with its G reflections and retries and the two controls."""
    cfg.validate()
    train = dataclasses.replace(train, reward_target="reflection", shared_reflection=False)  # R3's own rollout
    episodes = first_attempts(generator, task, rows, episode, progress)
    failed = [e for e in episodes if not e.first.ok]
    if not failed:
        return not_measured(cfg, f"the vanilla model failed none of the {len(rows)} validation problems"), []
    for condition in CONTROLS:
        second_turns(generator, task, failed, episode, condition, progress)
    size = train.group_size
    prompts = [reflection_conversation(task, e.example, e.attempt) for e in failed for _ in range(size)]
    reflections, retries = reflect_then_retry(generator, task, prompts, train, seed=train.seed)
    passed = [task.verify(r.text, failed[i // size].example).ok for i, r in enumerate(retries)]
    wins = [sum(passed[i * size:(i + 1) * size]) for i in range(len(failed))]
    own = [k / size for k in wins]
    rate = sum(own) / len(own)
    record: dict[str, Any] = {
        "measured": True, "split": "validation", "problems": len(rows), "failures": len(failed), "group_size": size,
        "decoding": {"reflection": {"tokens": train.reflection_tokens, "temperature": train.temperature},
                     "retry": {"tokens": train.retry_tokens, "temperature": train.retry_temperature}},
        "retry_success": {"own_reflection": rate, **{c: proportion(sum(e.second[c].verdict.ok for e in failed),
                                                                   len(failed)) for c in CONTROLS}},
        "rescue_rate": rate,
        "groups_with_signal": {"measured": sum(0 < k < size for k in wins) / len(wins),
                               "if_uniform": 1 - rate ** size - (1 - rate) ** size, "groups": len(wins)},
        "arithmetic": {"first_attempts": _operations(task, [e.attempt for e in episodes]),
                       "reflections": _operations(task, [r.text for r in reflections])},
        "reflections_read": read_reflections(task, [(failed[i // size].example, failed[i // size].attempt, r.text)
                                                     for i, r in enumerate(reflections)]),
        "settings": dataclasses.asdict(cfg),
    }
    for condition in CONTROLS:
        record[f"own_vs_{condition}"] = paired_difference([float(e.second[condition].verdict.ok) for e in failed], own)
    checks = {"own_vs_no_reflection": record["own_vs_no_reflection"]["difference"] >= cfg.min_gain,
              "own_vs_generic_reflection": record["own_vs_generic_reflection"]["difference"] >= cfg.min_gain,
              "groups_with_signal": record["groups_with_signal"]["measured"] >= cfg.min_signal}
    names = check_names(cfg)
    record.update(checks=checks, passed=all(checks.values()), failed=[names[k] for k, ok in checks.items() if not ok])
    transcripts = [{**e.to_dict(), "group": [{"reflection": reflections[i * size + j].text,
                                              "retry": retries[i * size + j].text, "ok": passed[i * size + j]}
                                             for j in range(size)]} for i, e in enumerate(failed)]
    return record, transcripts


def describe(record: dict | None) -> list[str]:
    """The gate in a few lines of words, for every report: what was measured, the numbers, what failed."""
    if not record:
        return ["R3's preconditions: not recorded for this run (made before the gate, or with preconditions=null)."]
    if not record.get("measured"):
        return [f"R3's preconditions: not measured ({record['reason']})."]
    success, signal = record["retry_success"], record["groups_with_signal"]
    lines = [f"R3's preconditions, on {record['failures']} failed first attempts of the vanilla model "
             f"({record['problems']} validation problems):",
             f"  retry success: own reflection {100 * success['own_reflection']:.1f}% (mean of {record['group_size']} "
             f"sampled per failure), no reflection {100 * success['no_reflection']['accuracy']:.1f}%, generic "
             f"reflection {100 * success['generic_reflection']['accuracy']:.1f}%"]
    for condition, words in (("no_reflection", "no reflection"), ("generic_reflection", "the generic reflection")):
        d = record[f"own_vs_{condition}"]
        p = f", p = {d['p_t']:.2g}" if d.get("p_t") is not None else ""
        lines.append(f"  own - {words}: {100 * d['difference']:+.1f} points [{100 * d['ci_low']:+.1f}, "
                     f"{100 * d['ci_high']:+.1f}]{p}")
    lines.append(f"  GRPO groups with signal: {100 * signal['measured']:.0f}% (rescue rate {100 * record['rescue_rate']:.1f}%; "
                 f"{100 * signal['if_uniform']:.0f}% if every failure had that rate)")
    for where, value in (record.get("arithmetic") or {}).items():
        if value:
            lines.append(f"  arithmetic: {100 * value['accuracy']:.0f}% of the {value['n']} single operations written "
                         f"in {where.replace('_', ' ')} are right")
    read = record.get("reflections_read") or {}
    shares = [f"{100 * read[k]['accuracy']:.0f}% {words}" for k, words in READ_REFLECTION.items() if read.get(k)]
    if shares:
        lines.append(f"  reflections: {', '.join(shares)}")
    if record["passed"]:
        lines.append("  the gate passed: R3 is tested where a reflection can help")
    else:
        lines.append(f"  the gate FAILED ({'; '.join(record['failed'])}): this run tests R3 where its preconditions "
                     "fail, not whether R3 teaches reflection")
    return lines
