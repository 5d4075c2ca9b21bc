"""The stages of a run, each a function of a RunConfig that reads and writes files in the run folder.

    student_stage(run)            make the CPU student (profiles with a `student` section)  -> student/
    mine_stage(run)               failure mining on the training split                       -> failures/
    preconditions_stage(run)      R3's gate on the validation split, with the vanilla model    -> preconditions.json
                                  (eval/preconditions.py; train_stage measures it first and prints it)
    train_stage(run, arm, seed)   r3 | grpo | retry_control (the arms; see core/trainer.py)         -> train/<variant>/
    evaluate_stage(run, which)    vanilla, or a trained variant, on the test split           -> eval/<which>/
                                  (a trained model also reflects on vanilla's failed attempts: on_vanilla_failures;
                                  its reflections there are retried by vanilla: frozen_retrier; and it is paired with
                                  vanilla problem by problem: paired_vs_vanilla. Vanilla's retries after another
                                  problem's reflection: swapped_reflection; after the solver's: oracle_reflection)
    forgetting_stage(run)         vanilla and the trained variants on lm-eval benchmarks     -> forgetting/
                                  (profiles with a `forgetting` section; see forgetting.py)
    figures_stage(run)            table and figures from the saved files only                -> figures/
Names: a variant is an arm trained with one seed: "r3", "grpo", "retry_control", or "r3-seed2" when a
study sets the seed; its evaluation is called the same, except R3's unseeded one, "trained" (the
name cpu-demo has always used).
Checkpoint selection (profiles with a `select` section): before a trained variant meets the test split,
each saved checkpoint and the final weights are evaluated on the validation split, the best by
`select.metric` is taken (ties: the later step), train/<variant>/selection.json records the scores,
and the test split evaluates the selected weights (eval/<which>/) and, if they differ, the last
(eval/<which>-last/). The test split never takes part in a choice.
The notebooks call these and show what they wrote; `r3kit reproduce` runs the notebooks in order.
Several processes (a `launch` section; launch.py): mine_stage, train_stage and evaluate_stage then run
`r3kit run STAGE` under the launcher as a subprocess, stream its output and return what it wrote; started
by a launcher themselves (`r3kit run`), they run in every process (distributed.py).
Every stage records its wall time in stages.json; evaluations also update the run's metrics.json
({"vanilla": ..., "trained": ..., "retry_control": ...}).
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import contextmanager
from pathlib import Path

from r3kit.core.arms import ARMS, VARIANTS, evaluation_name, parse_which, variant_name  # noqa: F401 (names of the stages)
from r3kit.core.episodes import EpisodeConfig, check_context, episode_prompt, first_attempts
from r3kit.core.mining import load_failures, mine_failures
from r3kit.core.trainer import check_processes, checkpoints, train
from r3kit.data import check_splits, load_split, source_for
from r3kit.eval import forgetting
from r3kit.eval.evaluate import (
    evaluate,
    frozen_retrier,
    on_fixed_failures,
    oracle_reflection,
    paired_with,
    swapped_reflection,
)
from r3kit.eval.forgetting import fingerprint, require_harness
from r3kit.eval.preconditions import describe, measure, not_measured
from r3kit.eval.selection import best_step
from r3kit.infra.distributed import barrier, world
from r3kit.infra.errors import UserError
from r3kit.infra.io import portable, read_json, read_jsonl, write_json, write_jsonl
from r3kit.models.generation import HFGenerator, base_generator, make_generator, prompt_ids
from r3kit.models.loading import load_model, load_tokenizer, release, to_generation_device
from r3kit.runs import launch
from r3kit.runs.profiles import RunConfig, episode_turns
from r3kit.student.countdown import make_student, recorded_identity, training_identity


def arm_config(run: RunConfig, arm: str, seed: int | None = None):
    """The TrainConfig of `arm` (with `seed` when given); a ValueError if the profile does not define it."""
    cfg = {"r3": run.train, "grpo": run.grpo, "retry_control": run.control}[arm] if arm in ARMS else None
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    if cfg is None:
        raise ValueError(f"profile {run.profile!r} defines no {arm} run (its `{'control' if arm == 'retry_control' else arm}` "
                         "section is null)")
    return cfg if seed is None else dataclasses.replace(cfg, seed=seed)


@contextmanager
def _timed(run: RunConfig, stage: str):
    start = time.perf_counter()
    yield
    path = run.run_dir / "stages.json"
    times = read_json(path) if path.exists() else {}
    times[stage] = round(time.perf_counter() - start, 2)
    write_json(path, times)
    barrier()  # under a launcher: no rank goes on before the main process has written the stage's files


def _rows(run: RunConfig, split: str = "test") -> list[dict]:

    return [dict(r) for r in load_split(run.data, split)]


def _test_rows(run: RunConfig) -> list[dict]:
    return _rows(run, "test")


def held_out_keys(run: RunConfig) -> set:
    """Problem keys of the test and validation splits: never trained on, by the student either."""

    key = source_for(run.task).key
    keys = {key(row) for row in _test_rows(run)}
    if run.data.n_validation:
        keys |= {key(row) for row in _rows(run, "validation")}
    return keys


def advise_budgets(run: RunConfig, n: int = 64) -> dict:
    """Context and turn budgets for this run's model and task, from the model's own tokenizer and `n` training
    rows (never test rows): the episode prompt's length, what each stage's episode needs, and a max_seq_length
    that holds the longest (rounded up to 256). `lines` says it in words; nothing is changed."""
    import math


    tokenizer = load_tokenizer(run.model)
    task = run.get_task()
    rows = _rows(run, "train")[:n]
    lengths = sorted(len(prompt_ids(tokenizer, episode_prompt(task, row))) for row in rows)
    longest, p95 = lengths[-1], lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)]
    stages = episode_turns(run)
    need = {name: longest + sum(turns) for name, turns in stages.items()}
    suggested = 256 * math.ceil(max(need.values()) / 256)
    native = getattr(tokenizer, "model_max_length", None)
    native = native if isinstance(native, int) and native < 10**8 else None
    lines = [f"episode prompt (task, attempt left empty, reflection request, retry request): longest {longest} tokens, "
             f"95th percentile {p95}, over {len(rows)} training rows with {run.model.name}'s tokenizer"]
    for name, turns in stages.items():
        verdict = "fits" if need[name] <= run.model.max_seq_length else "does NOT fit"
        lines.append(f"{name}: prompt {longest} + attempt {turns[0]} + reflection {turns[1]} + retry {turns[2]} = "
                     f"{need[name]} tokens; {verdict} in model.max_seq_length = {run.model.max_seq_length}")
    lines.append(f"suggested model.max_seq_length: {suggested}" + (
        f" (the tokenizer's own limit is {native})" if native else "") +
        ("; above the model's own limit: shorten the turns" if native and suggested > native else ""))
    return {"prompt_tokens": {"longest": longest, "p95": p95, "rows": len(rows)}, "needed": need,
            "max_seq_length": run.model.max_seq_length, "suggested_max_seq_length": suggested,
            "model_max_length": native, "lines": lines}


def check_context_with_tokenizer(run: RunConfig, rows: list[dict], turns: tuple[int, int, int], where: str,
                                 model_name: str | None = None) -> None:
    """Before a model loads: the longest episode prompt of `rows`, counted by the model's own tokenizer,
    plus the turns' token budgets must fit model.max_seq_length (else a ValueError with the numbers)."""

    tokenizer = load_tokenizer(dataclasses.replace(run.model, name=model_name or run.model.name))
    task = run.get_task()
    prompt = max(len(prompt_ids(tokenizer, episode_prompt(task, row, row.get("failed_attempt", "")))) for row in rows)
    check_context(run.model.max_seq_length, prompt, *turns, where)


def validation_check(run: RunConfig):
    """check(model, tokenizer) -> the greedy first-try rate on the first student.check_rows validation rows,
    with the evaluation's attempt length: how make_student decides when its student is skilled enough."""

    rows, task = _rows(run, "validation")[: run.student.check_rows], run.get_task()
    cfg = EpisodeConfig(attempt_tokens=run.evaluate.attempt_tokens, temperature=0.0)

    def check(model, tokenizer) -> float:
        episodes = first_attempts(HFGenerator(model, tokenizer, batch_size=run.evaluate.batch_size), task, rows, cfg,
                                  progress=False)
        return sum(e.first.ok for e in episodes) / len(episodes)

    return check


def student_stage(run: RunConfig) -> dict:
    """Train the student on problems outside the test and validation splits; saves student/ and student.json.
    A student this run already finished with the same settings is kept (a resumed run does not train it again;
    an unfinished one resumes from its saved training state, see student/countdown.py)."""

    if run.student is None:
        raise ValueError(f"profile {run.profile!r} has no student section: its model is {run.model.name}")
    check_splits(run.data)  # the later stages' splits, before the SFT rather than after it
    exclude = held_out_keys(run)
    done = run.run_dir / "student.json"
    if done.exists() and (run.run_dir / "student" / "model.safetensors").exists():
        summary = read_json(done)  # the same settings, task, data generator and held-out rows: the same student
        identity = training_identity(run.student, run.task, run.data.generator, exclude)
        if recorded_identity(summary) == identity:
            print(f"student already trained ({portable(done)}): kept; delete it to train it again")
            return summary
    check = validation_check(run) if run.student.stop_at_first_try is not None else None
    with _timed(run, "student"):
        summary = make_student(run.student, run.run_dir / "student", exclude=exclude, task=run.task,
                               generator=run.data.generator, check=check)
        write_json(run.run_dir / "student.json", summary)
    return summary


def trained_weights(run: RunConfig, variant: str, folder: str | Path | None = None) -> tuple[str, str | None]:
    """(model name, adapter) of a trained variant's final weights, or of `folder` (a checkpoint):
    LoRA adapters load over the base model, a fully fine-tuned model loads by itself."""
    folder = Path(folder) if folder else run.run_dir / "train" / variant
    if (folder / "adapter").exists():
        return run.model.name, str(folder / "adapter")
    if (folder / "model").exists():
        return str(folder / "model"), None
    if (folder / "adapter_config.json").exists():
        return run.model.name, str(folder)
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    if (folder / "config.json").exists() and any((folder / name).exists() for name in weights):
        return str(folder), None
    raise ValueError(f"no trained weights in {folder}: run the training stage ({variant}) first")


def _evaluate_weights(run: RunConfig, name: str, adapter: str | None, rows: list[dict], cfg, out: Path | None, label: str):
    """Load one set of weights, evaluate them on `rows`; returns (EvalResult, generator, model) with the model
    still loaded (the caller releases it). If the evaluation fails, the model is released before the error."""

    check_context_with_tokenizer(run, rows, (cfg.attempt_tokens, cfg.reflection_tokens, cfg.retry_tokens), label, name)
    model, tokenizer = load_model(dataclasses.replace(run.model, name=name), adapter=adapter)
    model = to_generation_device(model)
    try:
        generator = make_generator(model, tokenizer, batch_size=cfg.batch_size, split=True)
        result = evaluate(model, tokenizer, run.get_task(), rows, cfg, out, label=label, generator=generator)
    except BaseException:
        release(model)
        raise
    return result, generator, model


def _weights_of_step(run: RunConfig, variant: str, step: int, last: int) -> Path:
    """The folder holding a variant's weights at `step`: its final weights, or the checkpoint of that step."""
    folder = run.run_dir / "train" / variant
    return folder if step == last else folder / "checkpoints" / f"checkpoint-{step}"


def _choice(settings: dict | None) -> dict | None:
    """The selection settings the choice depends on (whether the test split scores the last weights does not)."""
    return None if settings is None else {k: v for k, v in settings.items() if k != "score_last"}


def select_stage(run: RunConfig, which: str) -> dict:
    """Choose a trained variant's weights on the validation split (see the module docstring); returns and
    writes train/<variant>/selection.json. Without a `select` section: the last weights, no evaluation."""

    arm, seed = parse_which(which)
    variant = variant_name(arm, seed)
    folder = run.run_dir / "train" / variant
    if not (folder / "summary.json").exists():
        raise ValueError(f"training of {variant} has not finished ({folder / 'summary.json'} is missing): run or resume "
                         "the training stage first")
    steps = read_json(folder / "summary.json")["steps"]
    trained_weights(run, variant)  # clear error before anything runs
    if run.select is None:
        return {"selected": steps, "last": steps, "split": None, "scores": {}}
    settings = dataclasses.asdict(run.select)
    path = folder / "selection.json"
    if path.exists():  # chosen earlier with the same settings and training: reused (JSON keys are text: steps again)
        selection = read_json(path)
        if _choice(selection.get("settings")) == _choice(json.loads(json.dumps(settings))) and selection.get("last") == steps:
            return {**selection, "scores": {int(k): v for k, v in selection["scores"].items()}}
    candidates = sorted({*(step for step, _ in checkpoints(folder, up_to=steps)), steps})  # checkpoints and the final weights
    cfg = dataclasses.replace(run.evaluate, n_examples=run.select.n_examples, conditions=tuple(run.select.conditions))
    rows = _rows(run, "validation")[: run.select.n_examples]
    scores = {}
    with _timed(run, f"select_{variant}"):
        for step in candidates:
            name, adapter = trained_weights(run, variant, _weights_of_step(run, variant, step, steps))
            out = run.run_dir / "eval" / which / "validation" / f"step-{step}"
            result, _, model = _evaluate_weights(run, name, adapter, rows, cfg, out, f"{which} step {step} (validation)")
            release(model)
            scores[step] = result.metrics[run.select.metric]["accuracy"]
    selection = {"split": "validation", "n": len(rows), "metric": run.select.metric, "settings": settings,
                 "scores": scores, "selected": best_step(scores), "last": steps}
    write_json(path, selection)
    return selection


def _frozen_retrier(run: RunConfig, model, generator, baseline_rows: list[dict], reflected: list[dict]
                    ) -> tuple[dict, list[dict]]:
    """The trained model's reflections (`reflected`), retried by vanilla (eval/evaluate.py): vanilla is the trained
    model's adapter switched off where it carries one, else the base weights loaded beside it for this step."""
    retrier = base_generator(model, generator.tokenizer, batch_size=run.evaluate.batch_size, split=True)
    if retrier is not None:
        return frozen_retrier(retrier, run.get_task(), baseline_rows, reflected, run.evaluate)
    vanilla, tokenizer = load_model(run.model)
    vanilla = to_generation_device(vanilla)
    try:
        retrier = make_generator(vanilla, tokenizer, batch_size=run.evaluate.batch_size, split=True)
        return frozen_retrier(retrier, run.get_task(), baseline_rows, reflected, run.evaluate)
    finally:
        release(vanilla)


# what an evaluation folder holds beside transcripts.jsonl and metrics.json, where its settings and arm ask for it
OPTIONAL_RECORDS = ("swapped_reflection.jsonl", "oracle_reflection.jsonl", "on_vanilla_failures.jsonl",
                    "frozen_retrier.jsonl")


def evaluate_stage(run: RunConfig, which: str = "vanilla") -> dict:
    """Evaluate vanilla or a trained variant on the test split; writes eval/<which>/ and metrics.json.
    A trained variant is first selected on validation (select_stage) when the profile selects."""

    arm, seed = parse_which(which)
    if launch.wanted(run):
        launch.in_processes(run, "evaluate", ["--which", which])
        return read_json(run.run_dir / "eval" / which / "metrics.json")
    if arm is None:
        targets = [(which, run.model.name, None, None)]
    else:
        variant = variant_name(arm, seed)
        selection = select_stage(run, which)
        selected, last = selection["selected"], selection["last"]
        chosen = _weights_of_step(run, variant, selected, last)
        targets = [(which, *trained_weights(run, variant, chosen), selection)]
        # the last weights too, first: `which` in metrics.json marks the stage finished
        if selected != last and run.select.score_last:
            targets.insert(0, (f"{which}-last", *trained_weights(run, variant), selection))
    rows = _test_rows(run)[: run.evaluate.n_examples]
    out_metrics = None
    for name_, model_name, adapter, selection in targets:
        with _timed(run, f"evaluate_{name_}"):
            out = run.run_dir / "eval" / name_
            for stale in OPTIONAL_RECORDS:  # this evaluation rewrites the folder: what it leaves out must not linger
                (out / stale).unlink(missing_ok=True)
            result, generator, model = _evaluate_weights(run, model_name, adapter, rows, run.evaluate, out, name_)
            try:
                path = run.run_dir / "metrics.json"
                metrics = read_json(path) if path.exists() else {}
                entry = {k: v for k, v in result.metrics.items() if k != "config"}
                if selection is not None and selection.get("split"):
                    step = selection["last"] if name_.endswith("-last") else selection["selected"]
                    entry["checkpoint"] = result.metrics["checkpoint"] = {
                        "step": step, "selected_on": "validation", "metric": selection["metric"],
                        "validation_score": selection["scores"][step], "last": selection["last"]}
                baseline = run.run_dir / "eval" / "vanilla" / "transcripts.jsonl"
                if arm is None and run.evaluate.bounds and "reflection" in run.evaluate.conditions:  # the bounds: another problem's reflection, the solver's
                    swapped, transcripts = swapped_reflection(generator, run.get_task(), result.transcripts, run.evaluate)
                    if swapped is not None:
                        write_jsonl(out / "swapped_reflection.jsonl", transcripts)
                        entry["swapped_reflection"] = result.metrics["swapped_reflection"] = swapped
                    oracle, transcripts = oracle_reflection(generator, run.get_task(), result.transcripts, run.evaluate)
                    if oracle is not None:
                        write_jsonl(out / "oracle_reflection.jsonl", transcripts)
                        entry["oracle_reflection"] = result.metrics["oracle_reflection"] = oracle
                if arm is not None and baseline.exists() and "reflection" in run.evaluate.conditions:
                    baseline_rows = read_jsonl(baseline)
                    entry["paired_vs_vanilla"] = result.metrics["paired_vs_vanilla"] = paired_with(
                        baseline_rows, result.transcripts)
                    fixed, transcripts = on_fixed_failures(generator, run.get_task(), baseline_rows, run.evaluate,
                                                           own=result.transcripts)
                    write_jsonl(out / "on_vanilla_failures.jsonl", transcripts)
                    entry["on_vanilla_failures"] = result.metrics["on_vanilla_failures"] = fixed
                    if run.evaluate.frozen_retrier:
                        frozen, transcripts = _frozen_retrier(run, model, generator, baseline_rows, transcripts)
                        write_jsonl(out / "frozen_retrier.jsonl", transcripts)
                        entry["frozen_retrier"] = result.metrics["frozen_retrier"] = frozen
                write_json(out / "metrics.json", result.metrics)
                metrics[name_] = entry
                if arm is not None and len(targets) == 1:  # no last weights scored now: none from earlier weights
                    metrics.pop(f"{which}-last", None)
                write_json(path, metrics)  # last: the run's metrics.json holding `which` means this stage finished
            finally:
                release(model)
        out_metrics = result.metrics
    return out_metrics


def mine_stage(run: RunConfig) -> dict:
    """Mine failures of the vanilla model on the training split; writes failures/."""

    if launch.wanted(run):
        launch.in_processes(run, "mine")
        return read_json(run.run_dir / "failures" / "manifest.json")
    with _timed(run, "mine"):
        rows = load_split(run.data, "train")
        check_context_with_tokenizer(run, [dict(r) for r in rows],
                                     (run.mine.attempt_tokens, run.train.reflection_tokens, run.train.retry_tokens),
                                     "mining for training")
        model, tokenizer = load_model(run.model)
        model = to_generation_device(model)
        try:
            mine_failures(model, tokenizer, run.get_task(), rows, run.mine, run.run_dir / "failures",
                          model_name=run.model.name)
        finally:
            release(model)
    return read_json(run.run_dir / "failures" / "manifest.json")


def _live_curves(cfg, out_dir) -> list:
    from r3kit.report.live import live_curves  # imports transformers: only once the model (and Unsloth) is loaded

    return live_curves(cfg, out_dir)


def preconditions_stage(run: RunConfig) -> dict | None:
    """R3's preconditions (eval/preconditions.py), measured with the vanilla model on the validation split;
    writes preconditions.json and preconditions/transcripts.jsonl. Kept while the model's weights and the
    settings stay the same; None for a profile that sets preconditions to null. The train stage measures it
    before any training (in the main process when it launches several)."""

    cfg = run.preconditions
    if cfg is None:
        return None
    path = run.run_dir / "preconditions.json"
    episode = run.evaluate.episode()
    train = run.train
    identity = json.loads(json.dumps(portable({  # as the file holds it
        "task": run.task, "prompt_style": run.prompt_style, "model": dataclasses.asdict(run.model),
        "weights": fingerprint(run.model.name), "data": dataclasses.asdict(run.data),
        "episode": dataclasses.asdict(episode), "settings": dataclasses.asdict(cfg),
        "training": {k: getattr(train, k) for k in ("group_size", "reflection_tokens", "retry_tokens", "temperature",
                                                    "retry_temperature", "top_p", "seed")}}), default=str))
    if path.exists() and read_json(path).get("identity") == identity:
        return read_json(path)
    if run.data.n_validation == 0:
        record = not_measured(cfg, "this run has no validation split (data.n_validation = 0)")
    else:
        rows = _rows(run, "validation")[: cfg.n_examples]
        turns = (episode.attempt_tokens, max(episode.reflection_tokens, train.reflection_tokens),
                 max(episode.retry_tokens, train.retry_tokens))  # the controls decode as evaluation does
        check_context_with_tokenizer(run, rows, turns, "preconditions")
        with _timed(run, "preconditions"):
            model, tokenizer = load_model(run.model)
            model = to_generation_device(model)
            try:
                generator = make_generator(model, tokenizer, batch_size=run.evaluate.batch_size, split=True)
                record, transcripts = measure(generator, run.get_task(), rows, episode, train, cfg)
            finally:
                release(model)
            if world()[0] == 0:  # under a launcher every process measures the same; the main one writes
                write_jsonl(run.run_dir / "preconditions" / "transcripts.jsonl", transcripts)
    record = json.loads(json.dumps({**record, "identity": identity}))  # as the file holds it
    if world()[0] == 0:
        write_json(path, record)
    return record


def train_stage(run: RunConfig, variant: str = "r3", seed: int | None = None) -> dict:
    """Train arm `variant` ("r3", "grpo" or "retry_control"; see core/trainer.py) on the mined failures, with the
    arm's seed or `seed`; writes train/<variant>[-seed<N>]/. R3's preconditions are measured first (once per
    run folder) and printed; with preconditions.on_fail="stop" a failed gate stops here, before any training."""

    cfg = arm_config(run, variant, seed)
    name = variant_name(variant, seed)
    if launch.wanted(run) and run.preconditions is not None:  # measured where training runs, not in this process
        launch.in_processes(run, "preconditions")
    gate = preconditions_stage(run)
    if gate is not None:
        print("\n".join(describe(gate)))
        if gate["passed"] is False and run.preconditions.on_fail == "stop":
            raise UserError(f"R3's preconditions failed ({'; '.join(gate['failed'])}) and preconditions.on_fail is "
                            "'stop': no training; see preconditions.json in the run folder")
    if launch.wanted(run):
        check_processes(cfg, run.launch.processes)
        launch.in_processes(run, "train", ["--arm", variant, *(["--seed", str(seed)] if seed is not None else [])])
        return read_json(run.run_dir / "train" / name / "summary.json")
    out = run.run_dir / "train" / name
    saved = checkpoints(out, up_to=cfg.steps)
    if not saved or saved[-1][0] < cfg.steps:  # steps will be trained: weights chosen earlier are not these
        (out / "selection.json").unlink(missing_ok=True)
    with _timed(run, f"train_{name}"):
        failures = load_failures(run.run_dir / "failures")
        if len(failures) and cfg.reward_target == "attempt":  # a fresh first attempt: the task prompt alone
            check_context_with_tokenizer(run, [{k: v for k, v in dict(r).items() if k != "failed_attempt"} for r in failures],
                                         (cfg.attempt_tokens, 0, 0), f"train {name}")
        elif len(failures):
            check_context_with_tokenizer(run, [dict(r) for r in failures], (0, cfg.reflection_tokens, cfg.retry_tokens),
                                         f"train {name}")
        summary = train(run.model, run.get_task(), failures, cfg, out, extra_callbacks=_live_curves)
    return summary


def forgetting_weights(run: RunConfig) -> dict[str, dict]:
    """{name: {"model", "adapter", "step", "fingerprint"}} of the models the forgetting check compares: vanilla, then each
    variant in forgetting.compare that the profile trains, with the weights its test evaluation used
    (the checkpoint chosen on validation, else the last)."""

    out = {"vanilla": {"model": run.model.name, "adapter": None, "step": None}}
    for which in run.forgetting.compare:
        arm, seed = parse_which(which)
        try:
            arm_config(run, arm, seed)
        except ValueError:
            continue  # the profile does not train this arm
        variant = variant_name(arm, seed)
        selection = select_stage(run, which)
        model, adapter = trained_weights(run, variant, _weights_of_step(run, variant, selection["selected"],
                                                                        selection["last"]))
        out[which] = {"model": model, "adapter": adapter, "step": selection["selected"]}
    return {name: {**w, "fingerprint": fingerprint(w["adapter"] or w["model"])} for name, w in out.items()}


def forgetting_stage(run: RunConfig) -> dict:
    """Vanilla and the trained variants on the profile's lm-eval tasks (forgetting.py); writes forgetting/
    (per model: lm-eval's results and per-sample logs) and forgetting.json. Models already evaluated with
    the same settings and weights are not evaluated again."""

    cfg = run.forgetting
    if cfg is None:
        raise ValueError(f"profile {run.profile!r} has no forgetting section")
    folder = run.run_dir / "forgetting"
    with _timed(run, "forgetting"):
        max_length = cfg.max_length or run.model.max_seq_length
        manager = forgetting.task_manager(cfg)
        forgetting.check_tasks(cfg, manager, max_length)  # names, data and lengths, before any model loads
        models = forgetting_weights(run)
        settings = portable(cfg.settings())  # as results.json holds them
        for name, weights in models.items():
            recorded = portable(weights)  # as results.json holds them
            if forgetting.done(folder / name, settings, recorded):
                continue
            # lm-eval generates through transformers (HFLM): no vLLM engine for this stage
            model, tokenizer = load_model(dataclasses.replace(run.model, name=weights["model"], fast_inference=False,
                                                              max_seq_length=max(max_length, run.model.max_seq_length)),
                                          adapter=weights["adapter"])
            try:
                results = forgetting.evaluate_model(model, tokenizer, cfg, manager, max_length)
            finally:
                release(model)
            forgetting.save_results(results, folder / name, settings, recorded)
        summary = forgetting.summarize(cfg, folder, list(models))
        write_json(run.run_dir / "forgetting.json", summary)
    return summary


def forgetting_done(run: RunConfig) -> bool:
    """True when forgetting.json summarises exactly the models and settings the stage would evaluate now."""

    path = run.run_dir / "forgetting.json"
    if run.forgetting is None or not path.exists():
        return False
    saved = read_json(path)
    models = {name: portable(w) for name, w in forgetting_weights(run).items()}
    return saved.get("settings") == portable(run.forgetting.settings()) and saved.get("models") == models


def figures_stage(run: RunConfig) -> list[Path]:
    """The paper-style table (PNG and Markdown) and figures, from the run's saved files only."""
    from r3kit.report import figures as plots  # matplotlib: only the figures stage draws

    with _timed(run, "figures"):
        return plots.all_figures(run.run_dir)


def run_all(run: RunConfig, log=print) -> list[str]:
    """Every stage of a profile in one process, in the order `r3kit reproduce` runs the notebooks (the Colab
    notebook uses it: one runtime, no papermill). A stage whose output is complete is skipped and an
    unfinished one resumes (mining by chunk, training from its last checkpoint), so running it again after
    a disconnect continues where it stopped. Each stage frees its model (and vLLM engine) when it ends, so
    one GPU holds one at a time. Returns the stages it ran."""
    d = run.run_dir
    if run.forgetting is not None:  # before the first stage, not after training
        require_harness()
    check_splits(run.data)

    def evaluated(which):  # the run's metrics.json gets `which` last, when the whole evaluation is written
        return lambda: (d / "metrics.json").exists() and which in read_json(d / "metrics.json")

    def exists(path):
        return lambda: path.exists()

    steps = [("student", lambda: student_stage(run), exists(d / "student.json"))] if run.student is not None else []
    steps += [("evaluate vanilla", lambda: evaluate_stage(run, "vanilla"), evaluated("vanilla")),
              ("mine failures", lambda: mine_stage(run), exists(d / "failures" / "manifest.json")),
              ("train r3", lambda: train_stage(run, "r3"), exists(d / "train" / "r3" / "summary.json")),
              ("evaluate trained", lambda: evaluate_stage(run, "trained"), evaluated("trained"))]
    for arm in ARMS[1:]:
        if (run.grpo if arm == "grpo" else run.control) is not None:
            steps += [(f"train {arm}", lambda arm=arm: train_stage(run, arm), exists(d / "train" / arm / "summary.json")),
                      (f"evaluate {arm}", lambda arm=arm: evaluate_stage(run, arm), evaluated(arm))]
    if run.forgetting is not None:  # a model already evaluated with the same settings and weights is skipped inside
        steps += [("forgetting check", lambda: forgetting_stage(run), lambda: forgetting_done(run))]
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


def run_stage(run: RunConfig, stage: str, arm: str = "r3", seed: int | None = None, which: str = "vanilla"):
    """One stage by name (what `r3kit run STAGE` calls, in one process or in each of a launcher's)."""
    if stage == "student":
        if world()[1] > 1:
            raise ValueError("the student stage runs in one process: start `r3kit run student` without a launcher")
        return student_stage(run)
    if stage == "mine":
        return mine_stage(run)
    if stage == "train":
        return train_stage(run, arm, seed)
    if stage == "evaluate":
        return evaluate_stage(run, which)
    if stage == "preconditions":  # the gate alone, as training would measure it first
        record = preconditions_stage(run)
        print("\n".join(describe(record)) if record is not None else "this profile sets preconditions to null")
        return record
    raise ValueError(f"unknown stage {stage!r}; choose student, mine, preconditions, train or evaluate")


def load_run(run_dir: str | Path) -> dict:
    """Everything small a finished run saved: metrics, stage times, training logs (for notebooks)."""
    run_dir = Path(run_dir)
    out = {}
    for name in ("metrics.json", "stages.json", "manifest.json", "student.json"):
        if (run_dir / name).exists():
            out[name.removesuffix(".json")] = read_json(run_dir / name)
    return out
