"""Evaluation: first-try and second-try accuracy, plus the two controls the paper lacked.

For every held-out problem: one first attempt (greedy by default). First-try accuracy counts those
that pass. Second-try accuracy counts a problem as solved if the first attempt passed, or if it failed
and the retry after the model's own reflection passed. On the same failed first attempts, two controls:
  retry_no_reflection       "wrong, try again" and a retry, no reflection turn at all;
  retry_generic_reflection  a fixed generic reflection in place of the model's own.
Each accuracy comes with a Wilson 95% interval. Files: metrics.json and transcripts.jsonl (one
problem's whole episode a line); `summarize` recomputes metrics.json from the transcripts alone.

`on_fixed_failures` isolates what R3 trains: a trained model reflects and retries on the *vanilla*
model's failed first attempts (read from its transcripts), so both models face the same failures and
the comparison is paired (Wilson intervals for each, exact McNemar test for the difference), free of
the noise that changed first attempts add to second-try accuracy. Its `both_failed_first` part keeps
only the problems the trained model also fails at first, so a rescue cannot come from first-try skill.
`paired_with` compares two whole evaluations problem by problem (first and second try gained/lost,
first attempts that changed).
`frozen_retrier` isolates the reflection: the trained model's reflections on vanilla's failed attempts
(those on_fixed_failures wrote) are retried by *vanilla*, against vanilla reflecting and retrying (paired). Its bounds for
one model: `swapped_reflection` retries after the model's reflection on another problem (below: what a reflection
carries beyond a generic turn), `oracle_reflection` after the reflection the task's solver writes (above: what a
better reflection could still give).

What the reflection itself adds, on the model's own failed first attempts (`own_failures`): retry
success after its own reflection, after no reflection and after the generic one, paired problem by
problem (exact McNemar). `copied` counts the retries whose answer already stands in the reflection
text: a retry that copies its reflection's conclusion. `reflections_read`, for a task that can read a reflection
(Task.read_reflection): the share of reflections on failed first attempts whose values are right, that name the
attempt's fault, whose conclusion verifies, whose conclusion repeats the failed equation.
Every test is two-sided (r3kit.eval.stats).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r3kit.core.episodes import (
    CONDITIONS,
    Episode,
    EpisodeConfig,
    SecondTurn,
    reflection_conversation,
    retry_conversation,
    run_episodes,
    second_turns,
)
from r3kit.eval.stats import mcnemar, proportion
from r3kit.infra.io import write_json, write_jsonl
from r3kit.models.generation import make_generator
from r3kit.tasks.base import Verdict

METRIC_KEYS = {"reflection": "second_try", "no_reflection": "retry_no_reflection", "generic_reflection": "retry_generic_reflection"}


@dataclass
class EvalConfig:
    n_examples: int | None = None  # None: the whole test split
    attempt_tokens: int = 512
    reflection_tokens: int = 256
    retry_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64
    conditions: tuple[str, ...] = CONDITIONS
    bounds: bool = True  # vanilla's evaluation: the swapped and the oracle reflection on its failures
    frozen_retrier: bool = True  # a trained model's evaluation: its reflections retried by vanilla

    def validate(self) -> None:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown}; choose from {CONDITIONS}")
        if self.n_examples is not None and self.n_examples < 1:
            raise ValueError(f"n_examples must be >= 1 or None, got {self.n_examples}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.episode().sampling("attempt").validate()

    def episode(self) -> EpisodeConfig:
        return EpisodeConfig(self.attempt_tokens, self.reflection_tokens, self.retry_tokens,
                             self.temperature, self.top_p, self.seed)


def _solved(row: dict, condition: str) -> bool:
    return row["first"]["verdict"]["ok"] or bool(row["second"].get(condition, {}).get("verdict", {}).get("ok"))


def _retry_ok(row: dict, condition: str) -> bool:
    return bool(row["second"][condition]["verdict"]["ok"])


def own_failures(transcripts: list[dict], conditions: tuple[str, ...]) -> dict[str, Any] | None:
    """On the model's own failed first attempts: retry success per condition, and the reflection paired
    against each control (`after` = the reflection)."""
    failed = [r for r in transcripts if not r["first"]["verdict"]["ok"] and all(c in r["second"] for c in conditions)]
    if not failed or "reflection" not in conditions:
        return None
    out: dict[str, Any] = {c: proportion(sum(_retry_ok(r, c) for r in failed), len(failed)) for c in conditions}
    own = [_retry_ok(r, "reflection") for r in failed]
    for control in conditions:
        if control != "reflection":
            out[f"reflection_vs_{control}"] = mcnemar([_retry_ok(r, control) for r in failed], own)
    return out


def _squash(text: str) -> str:
    return "".join(text.split())


def copied(task, transcripts: list[dict]) -> dict[str, Any] | None:
    """How many retries after a reflection give an answer that already stands in that reflection's text
    (the failed attempt's own answer, which a reflection may quote to check it, does not count)."""
    pairs = []
    for row in transcripts:
        turn = row["second"].get("reflection")
        if turn is None:
            continue
        reflection, retry = turn["messages"][1]["content"], turn["messages"][-1]["content"]
        answer = task.answer(retry)
        failed = task.answer(row["first"]["messages"][-1]["content"]) if "messages" in row["first"] else None
        if answer is not None and _squash(answer):
            text = _squash(reflection).replace(_squash(failed), "") if failed and _squash(failed) else _squash(reflection)
            pairs.append(_squash(answer) in text)
    return proportion(sum(pairs), len(pairs)) if pairs else None


READ_REFLECTION = {"values_right": "have every written value right",
                   "names_the_fault": "open with the attempt's fault",
                   "conclusion_verifies": "conclude with an equation that verifies",
                   "repeats_failed": "conclude with the failed equation"}


def read_reflections(task, triples: list[tuple[dict, str, str]]) -> dict[str, Any] | None:
    """Over (example, failed attempt, reflection) triples, the share of reflections with each READ_REFLECTION
    property (values_right: those that write values, with all of them right); None for a task that cannot read
    its reflections."""
    read = [task.read_reflection(example, attempt, text) for example, attempt, text in triples]
    read = [r for r in read if r is not None]
    if not read:
        return None
    out = {}
    for name in READ_REFLECTION:
        values = [r[name] for r in read if r.get(name) is not None]
        out[name] = proportion(sum(v == 1 for v in values), len(values)) if values else None
    return out


def summarize(transcripts: list[dict], conditions: tuple[str, ...] = CONDITIONS, task=None) -> dict[str, Any]:
    """metrics from transcript rows (the dicts of transcripts.jsonl); with `task`, also the copy rate."""
    n = len(transcripts)
    if n == 0:
        raise ValueError("no transcripts to summarize")
    metrics: dict[str, Any] = {"first_try": proportion(sum(r["first"]["verdict"]["ok"] for r in transcripts), n)}
    for condition in conditions:
        metrics[METRIC_KEYS[condition]] = proportion(sum(_solved(r, condition) for r in transcripts), n)
    buckets: dict[str, list[dict]] = {}
    for row in transcripts:
        buckets.setdefault(row["difficulty"], []).append(row)
    metrics["by_difficulty"] = {
        name: {"first_try": proportion(sum(r["first"]["verdict"]["ok"] for r in rows), len(rows)),
               "second_try": proportion(sum(_solved(r, "reflection") for r in rows), len(rows))}
        for name, rows in sorted(buckets.items())
    }
    reflections = [r["second"]["reflection"]["reflection_tokens"] for r in transcripts if "reflection" in r["second"]]
    metrics["reflection_tokens_mean"] = sum(reflections) / len(reflections) if reflections else None
    metrics["failed_first_attempts"] = sum(not r["first"]["verdict"]["ok"] for r in transcripts)
    metrics["own_failures"] = own_failures(transcripts, tuple(conditions))
    if task is not None:
        metrics["retry_copies_reflection"] = copied(task, transcripts)
        failed = [r for r in transcripts
                  if not r["first"]["verdict"]["ok"] and "reflection" in r["second"] and "messages" in r["first"]]
        read = read_reflections(task, [(r["example"], r["first"]["messages"][-1]["content"], _reflection(r)) for r in failed])
        if read is not None:
            metrics["reflections_read"] = read
    return metrics


def paired_with(baseline: list[dict], transcripts: list[dict]) -> dict[str, Any]:
    """Two models' evaluations on the same problems, paired (transcript rows matched by index):
    McNemar counts for first-try and second-try success (`after` = `transcripts`), and how many first
    attempts differ in text (training moves first attempts too, which reshuffles who fails)."""
    before = {row["index"]: row for row in baseline}
    if sorted(before) != sorted(row["index"] for row in transcripts):
        raise ValueError("paired evaluations need the same problems: the transcripts' indexes differ")
    rows = [(before[row["index"]], row) for row in transcripts]
    return {
        "first_try": mcnemar([b["first"]["verdict"]["ok"] for b, _ in rows], [a["first"]["verdict"]["ok"] for _, a in rows]),
        "second_try": mcnemar([_solved(b, "reflection") for b, _ in rows], [_solved(a, "reflection") for _, a in rows]),
        "changed_first_attempts": sum(b["first"]["messages"][-1]["content"] != a["first"]["messages"][-1]["content"]
                                      for b, a in rows),
        "n": len(rows),
    }


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    transcripts: list[dict] = field(repr=False)


def evaluate(model, tokenizer, task, examples, cfg: EvalConfig, out_dir: str | Path | None = None,
             label: str = "model", generator=None) -> EvalResult:
    """Run episodes on `examples` (a list or Dataset), write metrics.json and transcripts.jsonl to out_dir.
    `generator` replaces the default batched generator of `model`."""
    cfg.validate()
    rows = [dict(e) for e in examples]
    if cfg.n_examples is not None:
        rows = rows[: cfg.n_examples]
    if not rows:
        raise ValueError("the evaluation split is empty")
    for row in rows:
        task.validate_example(row)
    start = time.perf_counter()
    generator = generator or make_generator(model, tokenizer, batch_size=cfg.batch_size, split=True)
    episodes = run_episodes(generator, task, rows, cfg.episode(), tuple(cfg.conditions))
    transcripts = [e.to_dict() for e in episodes]
    metrics = summarize(transcripts, tuple(cfg.conditions), task)
    metrics.update(label=label, task=task.name, config=asdict(cfg), wall_seconds=time.perf_counter() - start,
                   generation={"tokens": generator.stats.tokens, "seconds": generator.stats.seconds,
                               "tokens_per_second": generator.stats.tokens_per_second})
    if out_dir is not None:
        write_jsonl(Path(out_dir) / "transcripts.jsonl", transcripts)
        write_json(Path(out_dir) / "metrics.json", metrics)
    return EvalResult(metrics, transcripts)


def _episode(row: dict) -> Episode:
    """An Episode holding a transcript row's first attempt (its second turns are left to be generated)."""
    first = row["first"]
    return Episode(row["index"], row["example"], row["difficulty"], first["messages"][:-1], first["messages"][-1]["content"],
                   Verdict(first["verdict"]["ok"], first["verdict"]["reason"]), first.get("attempt_tokens", 0))


def _failed(baseline: list[dict]) -> list[dict]:
    """The rows of `baseline` (transcript rows with their reflection condition) whose first attempt failed."""
    failed = [row for row in baseline if not row["first"]["verdict"]["ok"]]
    if not failed:
        raise ValueError("the baseline transcripts have no failed first attempt to reflect on")
    missing = [row["index"] for row in failed if "reflection" not in row["second"]]
    if missing:
        raise ValueError(f"baseline transcripts lack the reflection condition (e.g. problem {missing[0]})")
    return failed


def _reflection(row: dict) -> str:
    return row["second"]["reflection"]["messages"][1]["content"]  # request, reflection, retry request, retry


def _retried_after(generator, task, rows: list[dict], reflections: list[str], cfg: EvalConfig, label: str | None
                   ) -> list[Episode]:
    """Episodes of transcript `rows` whose reflection turn holds the given texts, each retried by `generator`."""
    episodes = [_episode(row) for row in rows]
    prompts = [retry_conversation(task, reflection_conversation(task, e.example, e.attempt), text)
               for e, text in zip(episodes, reflections)]
    retries = generator.generate(prompts, cfg.episode().sampling("retry", 2), progress=label)
    for episode, prompt, retry in zip(episodes, prompts, retries):
        episode.second["reflection"] = SecondTurn(
            "reflection", [*prompt[len(episode.prompt) + 1:], {"role": "assistant", "content": retry.text}],
            task.verify(retry.text, episode.example), retry_tokens=len(retry.token_ids))
    return episodes


def frozen_retrier(retrier, task, baseline: list[dict], reflected: list[dict], cfg: EvalConfig, progress: bool = True
                   ) -> tuple[dict, list[dict]]:
    """What the reflection alone adds: the reflections a trained model wrote on the failed first attempts of
    `baseline` (vanilla's transcripts), which are `reflected` (on_fixed_failures' transcripts), each retried
    by `retrier` (vanilla), against vanilla reflecting and retrying on the same attempts (paired, exact
    McNemar). Training cannot have changed how the retry reads a reflection here, so a difference is the
    reflection's. (metrics, transcripts)."""
    failed = _failed(baseline)
    written = {row["index"]: row for row in reflected}
    episodes = _retried_after(retrier, task, failed, [_reflection(written[row["index"]]) for row in failed], cfg,
                              "frozen retrier: retries" if progress else None)
    for episode, row in zip(episodes, failed):
        episode.second["reflection"].reflection_tokens = written[row["index"]]["second"]["reflection"]["reflection_tokens"]
    b = [row["second"]["reflection"]["verdict"]["ok"] for row in failed]
    a = [e.second["reflection"].verdict.ok for e in episodes]
    return ({"baseline": proportion(sum(b), len(b)), "model": proportion(sum(a), len(a)), "paired": mcnemar(b, a)},
            [e.to_dict() for e in episodes])


def _bound(generator, task, failed: list[dict], texts: list[str], cfg: EvalConfig, name: str, label: str | None
           ) -> tuple[dict, list[dict]]:
    """The retry of each failed row after `texts` in place of the model's own reflection, against the own one."""
    episodes = _retried_after(generator, task, failed, texts, cfg, label)
    bound = [e.second["reflection"].verdict.ok for e in episodes]
    own = [row["second"]["reflection"]["verdict"]["ok"] for row in failed]
    rows = [{"index": row["index"], "reflection": text, "retry": e.second["reflection"].messages[-1]["content"], "ok": ok}
            for row, text, e, ok in zip(failed, texts, episodes, bound)]
    return ({"own": proportion(sum(own), len(own)), name: proportion(sum(bound), len(bound)),
             f"own_vs_{name}": mcnemar(bound, own)}, rows)


def swapped_reflection(generator, task, transcripts: list[dict], cfg: EvalConfig, progress: bool = True
                       ) -> tuple[dict | None, list[dict]]:
    """A bound on what a reflection carries: each failed first attempt of `transcripts` (the model's own
    evaluation) is retried after the model's reflection on *another* failed problem (the next one), by the same
    model. A reflection whose content about its own problem matters does better than this; one that does no
    better helps, if at all, only as a generic turn. (metrics, transcripts); (None, []) with < 2 failures."""
    failed = [row for row in transcripts if not row["first"]["verdict"]["ok"] and "reflection" in row["second"]]
    if len(failed) < 2:
        return None, []
    shifted = [_reflection(row) for row in failed[1:] + failed[:1]]
    return _bound(generator, task, failed, shifted, cfg, "swapped", "swapped: retries" if progress else None)


def oracle_reflection(generator, task, transcripts: list[dict], cfg: EvalConfig, progress: bool = True
                      ) -> tuple[dict | None, list[dict]]:
    """The other bound: each failed first attempt of `transcripts` retried, by the same model, after the reflection
    the task's solver writes on it (Task.oracle_reflection), against after the model's own. The gap says how much
    a better reflection could still give this retry. (metrics, transcripts) on the failures the solver can
    solve; (None, []) for a task without a solver or without such failures."""
    failed = [row for row in transcripts if not row["first"]["verdict"]["ok"] and "reflection" in row["second"]]
    texts = [task.oracle_reflection(row["example"], _episode(row).attempt) for row in failed]
    failed, texts = [row for row, t in zip(failed, texts) if t is not None], [t for t in texts if t is not None]
    if not failed:
        return None, []
    return _bound(generator, task, failed, texts, cfg, "oracle", "oracle: retries" if progress else None)


def on_fixed_failures(generator, task, baseline: list[dict], cfg: EvalConfig, progress: bool = True,
                      own: list[dict] | None = None) -> tuple[dict, list[dict]]:
    """Reflect and retry with `generator` on the failed first attempts of `baseline` (transcript rows of
    another model's evaluation, with its own reflection condition): (metrics, this model's transcripts).
    metrics: `baseline` and `model` retry success on those attempts (proportions) and `paired` (McNemar);
    with `own` (this model's transcripts on the same problems), `both_failed_first`: the same on the
    problems this model also fails at first."""
    failed = _failed(baseline)
    episodes = second_turns(generator, task, [_episode(row) for row in failed], cfg.episode(), "reflection", progress)
    b = [row["second"]["reflection"]["verdict"]["ok"] for row in failed]
    a = [e.second["reflection"].verdict.ok for e in episodes]
    metrics = {"baseline": proportion(sum(b), len(b)), "model": proportion(sum(a), len(a)), "paired": mcnemar(b, a)}
    if own is not None:
        own_first = {row["index"]: row["first"]["verdict"]["ok"] for row in own}
        keep = [i for i, row in enumerate(failed) if own_first.get(row["index"]) is False]
        bb, aa = [b[i] for i in keep], [a[i] for i in keep]
        metrics["both_failed_first"] = {"baseline": proportion(sum(bb), len(bb)), "model": proportion(sum(aa), len(aa)),
                                        "paired": mcnemar(bb, aa)}
    return metrics, [e.to_dict() for e in episodes]
