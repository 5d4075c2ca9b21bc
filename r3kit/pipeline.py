"""The stages of a run, each a function of a RunConfig that reads and writes files in the run folder.

    student_stage(run)            make the CPU student (profiles with a `student` section)  -> student/
    evaluate_stage(run, which)    vanilla | trained | retry_control                          -> eval/<which>/
                                  (a trained model also reflects on vanilla's failed attempts: on_vanilla_failures,
                                  and is paired with vanilla problem by problem: paired_vs_vanilla)
    mine_stage(run)               failure mining on the training split                       -> failures/
    train_stage(run, variant)     r3 | retry_control                                         -> train/<variant>/
    figures_stage(run)            table and figures from the saved files only                -> figures/
The notebooks call these and show what they wrote; `r3kit reproduce` runs the notebooks in order.
Every stage records its wall time in stages.json; evaluations also update the run's metrics.json
({"vanilla": ..., "trained": ..., "retry_control": ...}).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from r3kit.io import read_json, write_json
from r3kit.profiles import RunConfig

EVALUATIONS = {"vanilla": None, "trained": "r3", "retry_control": "retry_control"}
VARIANTS = ("r3", "retry_control")


@contextmanager
def _timed(run: RunConfig, stage: str):
    start = time.perf_counter()
    yield
    path = run.run_dir / "stages.json"
    times = read_json(path) if path.exists() else {}
    times[stage] = round(time.perf_counter() - start, 2)
    write_json(path, times)


def _test_rows(run: RunConfig) -> list[dict]:
    from r3kit.data import load_split

    return [dict(r) for r in load_split(run.data, "test")]


def check_context_with_tokenizer(run: RunConfig, rows: list[dict], turns: tuple[int, int, int], where: str,
                                 model_name: str | None = None) -> None:
    """Before a model loads: the longest episode prompt of `rows`, counted by the model's own tokenizer,
    plus the turns' token budgets must fit model.max_seq_length (else a ValueError with the numbers)."""
    import dataclasses

    from r3kit.generation import prompt_ids
    from r3kit.models import load_tokenizer
    from r3kit.rollout import check_context, episode_prompt

    tokenizer = load_tokenizer(dataclasses.replace(run.model, name=model_name or run.model.name))
    task = run.get_task()
    prompt = max(len(prompt_ids(tokenizer, episode_prompt(task, row, row.get("failed_attempt", "")))) for row in rows)
    check_context(run.model.max_seq_length, prompt, *turns, where)


def student_stage(run: RunConfig) -> dict:
    """Train the student on problems outside the test split; saves student/ and student.json."""
    from r3kit.data import countdown
    from r3kit.student import make_student

    if run.student is None:
        raise ValueError(f"profile {run.profile!r} has no student section: its model is {run.model.name}")
    with _timed(run, "student"):
        exclude = {countdown.key(row) for row in _test_rows(run)}
        summary = make_student(run.student, run.run_dir / "student", exclude=exclude)
        write_json(run.run_dir / "student.json", summary)
    return summary


def trained_weights(run: RunConfig, variant: str) -> tuple[str, str | None]:
    """(model name, adapter) for a trained variant: LoRA adapters load over the base model."""
    folder = run.run_dir / "train" / variant
    if (folder / "adapter").exists():
        return run.model.name, str(folder / "adapter")
    if (folder / "model").exists():
        return str(folder / "model"), None
    raise ValueError(f"no trained weights in {folder}: run the training stage ({variant}) first")


def evaluate_stage(run: RunConfig, which: str = "vanilla") -> dict:
    """Evaluate the vanilla or a trained model on the test split; writes eval/<which>/ and metrics.json."""
    import dataclasses

    from r3kit.evaluate import evaluate, on_fixed_failures, paired_with
    from r3kit.generation import make_generator
    from r3kit.io import read_jsonl, write_jsonl
    from r3kit.models import load_model, release

    if which not in EVALUATIONS:
        raise ValueError(f"which must be one of {list(EVALUATIONS)}, got {which!r}")
    with _timed(run, f"evaluate_{which}"):
        name, adapter = (run.model.name, None) if EVALUATIONS[which] is None else trained_weights(run, EVALUATIONS[which])
        rows = _test_rows(run)[: run.evaluate.n_examples]
        e = run.evaluate
        check_context_with_tokenizer(run, rows, (e.attempt_tokens, e.reflection_tokens, e.retry_tokens), "evaluate", name)
        model, tokenizer = load_model(dataclasses.replace(run.model, name=name), adapter=adapter)
        try:
            generator = make_generator(model, tokenizer, batch_size=run.evaluate.batch_size)
            out = run.run_dir / "eval" / which
            result = evaluate(model, tokenizer, run.get_task(), rows, run.evaluate, out, label=which, generator=generator)
            path = run.run_dir / "metrics.json"
            metrics = read_json(path) if path.exists() else {}
            metrics[which] = {k: v for k, v in result.metrics.items() if k != "config"}
            baseline = run.run_dir / "eval" / "vanilla" / "transcripts.jsonl"
            if which != "vanilla" and baseline.exists() and "reflection" in run.evaluate.conditions:
                baseline_rows = read_jsonl(baseline)
                metrics[which]["paired_vs_vanilla"] = result.metrics["paired_vs_vanilla"] = paired_with(
                    baseline_rows, result.transcripts)
                fixed, transcripts = on_fixed_failures(generator, run.get_task(), baseline_rows, run.evaluate)
                write_jsonl(out / "on_vanilla_failures.jsonl", transcripts)
                metrics[which]["on_vanilla_failures"] = result.metrics["on_vanilla_failures"] = fixed
                write_json(out / "metrics.json", result.metrics)
            write_json(path, metrics)  # last: the run's metrics.json holding `which` means this stage finished
        finally:
            release(model)
    return result.metrics


def mine_stage(run: RunConfig) -> dict:
    """Mine failures of the vanilla model on the training split; writes failures/."""
    from r3kit.data import load_split
    from r3kit.mining import mine_failures
    from r3kit.models import load_model, release

    with _timed(run, "mine"):
        rows = load_split(run.data, "train")
        check_context_with_tokenizer(run, [dict(r) for r in rows],
                                     (run.mine.attempt_tokens, run.train.reflection_tokens, run.train.retry_tokens),
                                     "mining for training")
        model, tokenizer = load_model(run.model)
        try:
            mine_failures(model, tokenizer, run.get_task(), rows, run.mine, run.run_dir / "failures",
                          model_name=run.model.name)
        finally:
            release(model)
    return read_json(run.run_dir / "failures" / "manifest.json")


def train_stage(run: RunConfig, variant: str = "r3") -> dict:
    """R3 training (variant "r3") or the retry-reward control ("retry_control") on the mined failures."""
    from r3kit.mining import load_failures
    from r3kit.train import train

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    cfg = run.train if variant == "r3" else run.control
    if cfg is None:
        raise ValueError(f"profile {run.profile!r} defines no control run")
    with _timed(run, f"train_{variant}"):
        failures = load_failures(run.run_dir / "failures")
        if len(failures):
            check_context_with_tokenizer(run, [dict(r) for r in failures], (0, cfg.reflection_tokens, cfg.retry_tokens),
                                         f"train {variant}")
        summary = train(run.model, run.get_task(), failures, cfg, run.run_dir / "train" / variant)
    return summary


def figures_stage(run: RunConfig) -> list[Path]:
    """The paper-style table (PNG and Markdown) and figures, from the run's saved files only."""
    from r3kit import plots

    with _timed(run, "figures"):
        return plots.all_figures(run.run_dir)


def run_all(run: RunConfig, log=print) -> list[str]:
    """Every stage of a profile in one process, in the order `r3kit reproduce` runs the notebooks (the Colab
    notebook uses it: one runtime, no papermill). A stage whose output is complete is skipped and an
    unfinished one resumes (mining by chunk, training from its last checkpoint), so running it again after
    a disconnect continues where it stopped. Each stage frees its model (and vLLM engine) when it ends, so
    one GPU holds one at a time. Returns the stages it ran."""
    d = run.run_dir

    def evaluated(which):  # the run's metrics.json gets `which` last, when the whole evaluation is written
        return lambda: (d / "metrics.json").exists() and which in read_json(d / "metrics.json")

    def exists(path):
        return lambda: path.exists()

    steps = [("student", lambda: student_stage(run), exists(d / "student.json"))] if run.student is not None else []
    steps += [("evaluate vanilla", lambda: evaluate_stage(run, "vanilla"), evaluated("vanilla")),
              ("mine failures", lambda: mine_stage(run), exists(d / "failures" / "manifest.json")),
              ("train r3", lambda: train_stage(run, "r3"), exists(d / "train" / "r3" / "summary.json")),
              ("evaluate trained", lambda: evaluate_stage(run, "trained"), evaluated("trained"))]
    if run.control is not None:
        steps += [("train retry_control", lambda: train_stage(run, "retry_control"),
                   exists(d / "train" / "retry_control" / "summary.json")),
                  ("evaluate retry_control", lambda: evaluate_stage(run, "retry_control"), evaluated("retry_control"))]
    steps += [("figures", lambda: figures_stage(run), lambda: False)]
    ran = []
    for name, stage, done in steps:
        if done():
            log(f"{name}: done earlier")
            continue
        start = time.perf_counter()
        log(f"{name}: running")
        stage()
        ran.append(name)
        log(f"{name}: finished in {time.perf_counter() - start:.0f} s")
    return ran


def load_run(run_dir: str | Path) -> dict:
    """Everything small a finished run saved: metrics, stage times, training logs (for notebooks)."""
    run_dir = Path(run_dir)
    out = {}
    for name in ("metrics.json", "stages.json", "manifest.json", "student.json"):
        if (run_dir / name).exists():
            out[name.removesuffix(".json")] = read_json(run_dir / name)
    return out
