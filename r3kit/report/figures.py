"""Figures and the paper-style table, drawn from a run folder's saved files only (never from a model).

    table.md / table.png      accuracy of each model (vanilla, R3, plain GRPO, retry control) on the
                              first try, second try and the two controls, with Wilson 95% intervals
    accuracy.png              the same numbers as grouped bars with interval whiskers
    fixed_failures.png        retry success after each model's own reflection on the vanilla model's failed
                              first attempts (the same attempts for every model; paired McNemar p-values)
    training_curves.png       per step: retry success (reward), groups with no signal, reflection length, KL
    reflection_length.png     reflection length (tokens) on the test set before and after training
    accuracy_by_difficulty.png  first and second try by difficulty bucket (e.g. 3 vs 4 numbers)
    failure_categories.png    (tasks with Task.failure_categories, e.g. function calling) the verifier's reasons by
                              kind, per model: failed first attempts, and failed retries after the model's own
                              reflection, as a share of the test problems
    student.png               (a student trained with validation checks) its SFT loss and validation first try by step
    conclusion.md             what the run shows, in sentences written from these files (report/conclusion.py)
    reflections.md            (the same tasks) three random problems that vanilla and each trained model both failed
                              on the first try: the attempt, the reflection and the retry's verdict, before and after
    forgetting.md / forgetting.png  (runs with forgetting.json) each lm-eval benchmark: every model's score with
                              +-1.96 lm-eval standard errors, and each trained model minus vanilla, paired per item,
                              with its 95% t interval
A study's figures (runs/study.py draws them from study.json and the training logs):
    study_seeds.png           every training seed as a dot, per arm and measure, with mean +- sd
    study_differences.png     paired-by-seed differences with their 95% t intervals, declared endpoints first
    study_training.png        each arm's reward and groups with no signal per step, every seed and their mean

Every model and every retry condition has one name and one colour in all of them (report/palette.py).
Figures are drawn with matplotlib's object API (a Figure, never pyplot's global state or a backend switch), so
importing this module leaves a notebook's inline plotting as it was; each function saves a PNG and returns its path.
"""

from __future__ import annotations

import csv
import random
import textwrap
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from r3kit.eval.evaluate import READ_REFLECTION
from r3kit.eval.forgetting import CHANCE
from r3kit.eval.preconditions import describe
from r3kit.infra.io import read_json, read_jsonl
from r3kit.report import palette
from r3kit.report.conclusion import run_conclusion
from r3kit.report.explore import episodes, failure_reasons
from r3kit.report.palette import CONDITIONS
from r3kit.tasks import get_task

COLUMNS = [(column, label) for column, (label, _) in CONDITIONS.items()]
MODELS = [(key, palette.name(key)) for key in ("vanilla", "trained", "grpo", "retry_control")]  # metrics.json's keys


def _models(metrics: dict) -> list[tuple[str, str]]:
    """(key, label) of every evaluated model in metrics.json, in MODELS order; a model chosen on validation
    is labelled with its step, and its last weights (if they differ) follow it."""
    out = []
    for key, label in MODELS:
        if key not in metrics:
            continue
        checkpoint = metrics[key].get("checkpoint")
        out.append((key, f"{label} (step {checkpoint['step']}, chosen on validation)" if checkpoint else label))
        if f"{key}-last" in metrics:
            out.append((f"{key}-last", f"{label} (last weights, step {metrics[f'{key}-last']['checkpoint']['step']})"))
    return out


def _metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.exists():
        raise ValueError(f"{path} does not exist: run the evaluation stages first")
    return read_json(path)


def _cell(entry: dict | None) -> str:
    if not entry:
        return "—"
    return f"{100 * entry['accuracy']:.1f} [{100 * entry['ci_low']:.1f}, {100 * entry['ci_high']:.1f}]"


def preconditions_lines(run_dir: str | Path) -> list[str]:
    """R3's preconditions as the run recorded them (eval/preconditions.py), in words: every report starts here."""
    path = Path(run_dir) / "preconditions.json"
    return describe(read_json(path) if path.exists() else None)


def table_markdown(run_dir: str | Path) -> str:
    metrics = _metrics(Path(run_dir))
    n = next(iter(metrics.values()))["first_try"]["n"]
    gate = preconditions_lines(run_dir)
    lines = [gate[0], *(f"- {line.strip()}" for line in gate[1:]), "",
             f"Accuracy % [Wilson 95% interval], n = {n} held-out problems", "",
             "| model | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for key, label in _models(metrics):
        if key in metrics:
            lines.append(f"| {label} | " + " | ".join(_cell(metrics[key].get(c)) for c, _ in COLUMNS) + " |")
    fixed = [(label, entry) for _, label, entry in _fixed(metrics)]
    lines += _against_vanilla(fixed, "Retry success % [Wilson 95% interval] after the model's own reflection on the vanilla "
                              "model's {n} failed first attempts (the same attempts for every model)", "model",
                              "vs vanilla on the same attempts")
    frozen = [(label, metrics[key]["frozen_retrier"]) for key, label in _models(metrics)
              if "frozen_retrier" in metrics.get(key, {})]
    lines += _against_vanilla(frozen, "Frozen retrier: each model's reflection on the vanilla model's {n} failed first "
                              "attempts, then the *vanilla* model's retry (what the reflection alone adds)", "reflection by",
                              "vs vanilla's reflection")
    for bound, after, which in (("swapped", "its reflection on another problem", "failed attempts"),
                                ("oracle", "the task's solver's reflection", "failed attempts the solver solves")):
        entry = metrics.get("vanilla", {}).get(f"{bound}_reflection")
        if entry:
            paired = entry[f"own_vs_{bound}"]
            lines += ["", f"Bound: the vanilla model's retry after its own reflection {_cell(entry['own'])} and after "
                      f"{after} {_cell(entry[bound])} ({entry['own']['n']} {which}; own gained {paired['gained']}, "
                      f"lost {paired['lost']}, p = {paired['p_value']:.2g})"]
    read = [(label, metrics[key]["reflections_read"]) for key, label in _models(metrics)
            if metrics.get(key, {}).get("reflections_read")]
    if read:
        lines += ["", "How the reflections on each model's own failed first attempts read, % [Wilson 95% interval]", "",
                  "| model | " + " | ".join(READ_REFLECTION.values()) + " |", "|---" * (len(READ_REFLECTION) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(_cell(entry.get(k)) for k in READ_REFLECTION) + " |" for label, entry in read]
    pairs = [(label, metrics[key]["paired_vs_vanilla"]) for key, label in _models(metrics)
             if "paired_vs_vanilla" in metrics.get(key, {})]
    if pairs:
        lines += ["", f"Against vanilla, problem by problem (the same {pairs[0][1]['n']} problems; exact two-sided McNemar)", "",
                  "| model | first try | second try | first attempts that changed |", "|---|---|---|---|"]
        for label, pair in pairs:
            cells = [f"{pair[k]['gained']} gained, {pair[k]['lost']} lost, p = {pair[k]['p_value']:.2g}" for k in ("first_try", "second_try")]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} | {pair['changed_first_attempts']} |")
    return "\n".join(lines) + "\n"


def _against_vanilla(entries: list[tuple[str, dict]], title: str, who: str, versus: str) -> list[str]:
    """A table of retry success on vanilla's failed attempts: vanilla's row, then each model's, paired against it."""
    if not entries:
        return []
    lines = ["", title.format(n=entries[0][1]["baseline"]["n"]), "",
             f"| {who} | retry success | {versus} (exact two-sided McNemar) |", "|---|---|---|",
             f"| vanilla | {_cell(entries[0][1]['baseline'])} | — |"]
    for label, entry in entries:
        paired = entry["paired"]
        lines.append(f"| {label} | {_cell(entry['model'])} | {paired['gained']} gained, {paired['lost']} lost, "
                     f"p = {paired['p_value']:.2g} |")
    return lines


def _fixed(metrics: dict) -> list[tuple[str, str, dict]]:
    return [(key, label, metrics[key]["on_vanilla_failures"]) for key, label in _models(metrics)
            if key in metrics and "on_vanilla_failures" in metrics[key]]


def fixed_failures(run_dir: Path, out: Path) -> Path | None:
    fixed = _fixed(_metrics(run_dir))
    if not fixed:
        return None
    bars = [("vanilla", fixed[0][2]["baseline"], None)] + [(label, e["model"], e["paired"]["p_value"]) for _, label, e in fixed]
    keys = ["vanilla"] + [key for key, _, _ in fixed]
    fig, ax = _subplots(figsize=(7, 4))
    for i, (_, entry, p) in enumerate(bars):
        y = 100 * entry["accuracy"]
        ax.bar(i, y, 0.6, yerr=[[y - 100 * entry["ci_low"]], [100 * entry["ci_high"] - y]], capsize=4,
               color=palette.colour(keys[i]), edgecolor="black", linewidth=0.5, hatch="//" if keys[i].endswith("-last") else None)
        ax.annotate(f"{y:.1f}%" + (f"\np = {p:.2g}" if p is not None else ""), (i, 100 * entry["ci_high"]),
                    xytext=(0, 4), textcoords="offset points", ha="center", fontsize=9)
    ax.set_xticks(range(len(bars)), [textwrap.fill(label, 24) for label, _, _ in bars], fontsize=8)
    ax.set_ylabel("retry success (%)")
    ax.set_ylim(0, max(100 * e["ci_high"] for _, e, _ in bars) * 1.3)
    ax.set_title(f"Own reflection + retry on the vanilla model's {bars[0][1]['n']} failed first attempts\n"
                 "(same attempts for every model; p: two-sided exact McNemar vs vanilla)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def table_png(run_dir: Path, out: Path) -> Path:
    metrics = _metrics(run_dir)
    rows = [(label, [_cell(metrics[key].get(c)) for c, _ in COLUMNS]) for key, label in _models(metrics)]
    fig, ax = _subplots(figsize=(12, 0.6 + 0.5 * len(rows)))
    ax.axis("off")
    table = ax.table(cellText=[cells for _, cells in rows], rowLabels=[label for label, _ in rows],
                     colLabels=[label for _, label in COLUMNS], loc="center", cellLoc="center")
    table.scale(1, 1.6)
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    ax.set_title("Accuracy % [Wilson 95% interval]", fontsize=10)
    return _save(fig, out)


def accuracy_bars(run_dir: Path, out: Path) -> Path:
    metrics = _metrics(run_dir)
    models = _models(metrics)
    fig, ax = _subplots(figsize=(9, 4.5))
    width = 0.8 / len(COLUMNS)
    for j, (column, (label, shade)) in enumerate(CONDITIONS.items()):
        xs, ys, low, high = [], [], [], []
        for i, (key, _) in enumerate(models):
            entry = metrics[key].get(column)
            if entry:
                xs.append(i + (j - (len(COLUMNS) - 1) / 2) * width)
                ys.append(100 * entry["accuracy"])
                low.append(100 * (entry["accuracy"] - entry["ci_low"]))
                high.append(100 * (entry["ci_high"] - entry["accuracy"]))
        ax.bar(xs, ys, width, yerr=[low, high], capsize=3, label=label, color=shade, edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(models)), [textwrap.fill(label, 24) for _, label in models], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    n = metrics[models[0][0]]["first_try"]["n"]
    ax.set_title(f"Held-out accuracy (n = {n}), whiskers: Wilson 95% intervals")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside the bars
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def _log(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _smooth(values: list[float], window: int = 10) -> list[float]:
    return [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


CURVES = {arm: (palette.name(arm, rewards=True), palette.colour(arm)) for arm in ("r3", "retry_control", "grpo")}


def curves_figure(logs: dict[str, list[dict]], title: str = "") -> Figure:
    """Per step, one line per variant (keys of CURVES; rows as log.csv holds them): retry success (reward),
    groups with no signal, reflection length, and KL (or entropy when beta = 0)."""
    has_kl = any(r.get("kl") not in ("", None) for rows in logs.values() for r in rows)
    last = ("kl", "KL to the starting model") if has_kl else ("entropy", "entropy of the trained turn (beta = 0: no KL)")
    panels = [("reward", "success of the rewarded turn (reward)"), ("frac_zero_std", "groups with no signal"),
              ("reflection_tokens", "reflection length (tokens)"), last]
    fig, axes = _subplots(2, 2, figsize=(10.5, 6.4))  # 2 x 2: reads at a notebook's width
    axes = [ax for row in axes for ax in row]
    for (column, panel), ax in zip(panels, axes):
        for variant, rows in logs.items():
            kept = [r for r in rows if r.get(column) not in ("", None)]
            steps, values = [int(r["step"]) for r in kept], [float(r[column]) for r in kept]
            label, colour = CURVES[variant]
            ax.plot(steps, values, alpha=0.25, color=colour)
            ax.plot(steps, _smooth(values), label=label, color=colour)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=len(labels), frameon=False)
    fig.suptitle(title or "Training on mined failures (thin: per step; thick: 10-step mean)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def training_curves(run_dir: Path, out: Path) -> Path | None:
    logs = {v: _log(run_dir / "train" / v / "log.csv") for v in ("r3", "grpo", "retry_control") if (run_dir / "train" / v / "log.csv").exists()}
    if not logs:
        return None
    return _save(curves_figure(logs), out)


def reflection_lengths(run_dir: Path, out: Path) -> Path | None:
    series = {}
    for which, _ in MODELS:
        path = run_dir / "eval" / which / "transcripts.jsonl"
        if path.exists():
            lengths = [r["second"]["reflection"]["reflection_tokens"] for r in read_jsonl(path) if "reflection" in r["second"]]
            if lengths:
                series[which] = lengths
    if not series:
        return None
    fig, ax = _subplots(figsize=(7, 4))
    low, top = min(min(v) for v in series.values()), max(max(v) for v in series.values())
    step = max(1, (top - low + 1) // 40)
    bins = range(low, top + 1 + step, step)
    for key, lengths in series.items():  # outlines, not blended fills: each model's shape stays readable
        ax.hist(lengths, bins=bins, histtype="step", linewidth=1.6, color=palette.colour(key),
                label=f"{palette.name(key)} (mean {sum(lengths) / len(lengths):.1f})")
    ax.set_xlim(low - 1, top + 2)
    ax.set_xlabel("reflection length (tokens of the model's tokenizer: characters for the CPU student)")
    ax.set_ylabel("failed first attempts")
    ax.set_title("Reflections on the held-out failures")
    ax.legend(fontsize=8)
    return _save(fig, out)


def student_progress(run_dir: Path, out: Path) -> Path | None:
    """A student trained with validation checks (student.stop_at_first_try): its SFT loss and its greedy first
    try on validation by step, the extract steps shaded and the stop target drawn."""
    path = run_dir / "student.json"
    summary = read_json(path) if path.exists() else {}
    checks = summary.get("validation_checks")
    if not checks:
        return None
    config, curve = summary["config"], summary["loss_curve"]
    stride = max(1, summary["steps_trained"] // 200)
    fig, ax = _subplots(figsize=(7.5, 4))
    ax.plot([i * stride + 1 for i in range(len(curve))], curve, color="#9aa5b1", lw=1)
    ax.set_xlabel(f"SFT step (batches of {config['batch_size']} conversations)")
    ax.set_ylabel("training loss", color="#4a5568")
    if config.get("extract_steps"):
        ax.axvspan(0, config["extract_steps"], color="#edf2f7", zorder=0, label="extract steps (query -> values)")
    right = ax.twinx()
    right.plot([c["step"] for c in checks], [100 * c["first_try"] for c in checks], "o-", color="#2b6cb0",
               label=f"first try, {config['check_rows']} validation rows (greedy)")
    if config.get("stop_at_first_try") is not None:
        right.axhline(100 * config["stop_at_first_try"], color="#2b6cb0", ls="--", lw=1, label="stop target")
    right.set_ylabel("validation first try (%)", color="#2b6cb0")
    right.set_ylim(0, 100)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    right.legend(handles=handles, fontsize=8, loc="center left")
    reached = "reached" if summary.get("reached_stop_at_first_try") else "did not reach"
    ax.set_title(f"The student: {summary['steps_trained']} steps, {reached} its validation target", fontsize=10)
    return _save(fig, out)


def _categorised_task(run_dir: Path):
    """The run's task if it sorts its failures into fixed categories, else None."""

    metrics = _metrics(run_dir)
    names = {m.get("task") for m in metrics.values() if isinstance(m, dict)} - {None}
    task = get_task(names.pop()) if len(names) == 1 else None
    return task if task is not None and task.failure_categories else None


def failure_categories(run_dir: Path, out: Path) -> Path | None:
    task = _categorised_task(run_dir)
    if task is None:
        return None
    df = episodes(run_dir)
    labels = dict(MODELS)
    models = [m for m in df["model"].unique() if m in labels]
    n = {m: df.loc[df["model"] == m, "index"].nunique() for m in models}
    fig, axes = _subplots(1, 2, figsize=(12, 4.6), sharey=True)
    categories = list(task.failure_categories)
    width = 0.8 / max(1, len(models))
    for ax, turn, title in zip(axes, ("first", "retry"), ("failed first attempts", "failed retries after own reflection")):
        counts = failure_reasons(df, task, turn).reindex(index=categories, columns=models).fillna(0)
        for k, model in enumerate(models):
            shares = [100 * counts.loc[c, model] / n[model] for c in categories]
            ax.bar([i + (k - (len(models) - 1) / 2) * width for i in range(len(categories))], shares, width,
                   label=f"{labels[model]} ({sum(shares):.1f}% in all)", color=palette.colour(model))
        ax.set_xticks(range(len(categories)), [textwrap.fill(c, 10) for c in categories], fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("% of test problems")
    fig.suptitle("Why the verifier failed them, by kind (counts per kind in results' transcripts)", fontsize=10)
    return _save(fig, out)


def reflections_markdown(run_dir: Path, k: int = 3, seed: int = 0) -> str | None:
    """Three random problems (seeded) that vanilla and each trained model both failed on the first try, with
    each model's attempt, reflection and the retry's verdict: the reflections before and after training."""
    if _categorised_task(run_dir) is None:
        return None
    df = episodes(run_dir)
    own = df[df["condition"] == "reflection"].set_index(["model", "index"])
    lines = ["# Reflections before and after training", "",
             f"{k} random problems (seed {seed}) that vanilla and the trained model both failed on the first try, "
             "from the test transcripts. Lengths are in tokens.", ""]
    for model, label in MODELS[1:]:
        if model not in df["model"].unique():
            continue
        shared = sorted(set(own.loc["vanilla"].index) & set(own.loc[model].index)) if "vanilla" in own.index else []
        lines += [f"## vanilla vs {label}", ""]
        for index in random.Random(seed).sample(shared, min(k, len(shared))):
            lines += [f"### problem {index}", "", "```", str(own.loc[("vanilla", index), "problem"]), "```", ""]
            for who, name in (("vanilla", "vanilla"), (model, label)):
                row = own.loc[(who, index)]
                lines += [f"- **{name}** attempt: `{row['attempt']}`",
                          f"  reflection ({row['reflection_tokens']} tokens): `{row['reflection']}`",
                          f"  retry {'passed' if row['ok'] else 'failed'}: `{row['retry']}` ({row['reason']})"]
            lines.append("")
    return "\n".join(lines)


def accuracy_by_difficulty(run_dir: Path, out: Path) -> Path | None:
    """First and second try per difficulty bucket; None where the test split has a single bucket (accuracy.png
    already shows it, with intervals)."""
    metrics = _metrics(run_dir)
    models = _models(metrics)
    buckets = sorted({b for key, _ in models for b in metrics[key]["by_difficulty"]})
    if len(buckets) < 2:
        return None
    fig, axes = _subplots(1, len(buckets), figsize=(4.5 * len(buckets), 4), squeeze=False)
    for ax, bucket in zip(axes[0], buckets):
        for j, column in enumerate(("first_try", "second_try")):
            label, shade = CONDITIONS[column]
            ys = [100 * metrics[key]["by_difficulty"].get(bucket, {}).get(column, {"accuracy": 0})["accuracy"] for key, _ in models]
            ax.bar([i + (j - 0.5) * 0.38 for i in range(len(models))], ys, 0.38, label=label, color=shade, edgecolor="black", linewidth=0.5)
        n = metrics[models[0][0]]["by_difficulty"].get(bucket, {}).get("first_try", {}).get("n", 0)
        ax.set_title(f"{bucket} (n = {n})", fontsize=10)
        ax.set_xticks(range(len(models)), [textwrap.fill(label, 16) for _, label in models], fontsize=7)
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _save(fig, out)


STUDY_ARMS = [(arm, palette.name(arm).replace(" ", "\n", 1)) for arm in ("vanilla", "r3", "grpo", "retry_control")]
STUDY_PANELS = [("first_try", "first try"), ("second_try", "second try (own reflection)"),
                ("both_failed_first", "retry on vanilla's failures\nthat this model also fails first"),
                ("own_failures_reflection", "retry after own reflection,\non its own failures")]


def study_seeds(study: dict, out: Path) -> Path | None:
    """One panel per measure: every training seed as a dot (marker: student), mean ± sd as a bar."""
    rows = study["rows"]
    arms = [(a, label) for a, label in STUDY_ARMS if any(r["arm"] == a for r in rows)]
    panels = [(k, t) for k, t in STUDY_PANELS if any(r.get(k) is not None for r in rows)]
    if not arms or not panels:
        return None
    cols = min(2, len(panels))  # two panels a row: the figure reads at a notebook's width
    grid = -(-len(panels) // cols)
    fig, axes = _subplots(grid, cols, figsize=(5.2 * cols, 3.9 * grid), squeeze=False)
    axes = [ax for row in axes for ax in row]
    for spare in axes[len(panels):]:
        spare.axis("off")
    markers = "os^Dv"
    students = sorted({r["student"] for r in rows})
    for ax, (key, title) in zip(axes, panels):
        for i, (arm, _) in enumerate(arms):
            values = [(r["student"], 100 * r[key]) for r in rows if r["arm"] == arm and r.get(key) is not None]
            if not values:
                continue
            for j, (student, y) in enumerate(values):
                ax.scatter(i + 0.06 * (j - (len(values) - 1) / 2), y, s=28, color=palette.colour(arm), edgecolor="black", linewidth=0.4,
                           marker=markers[students.index(student) % len(markers)], zorder=3)
            ys = [y for _, y in values]
            mean = sum(ys) / len(ys)
            sd = (sum((y - mean) ** 2 for y in ys) / (len(ys) - 1)) ** 0.5 if len(ys) > 1 else 0.0
            ax.errorbar(i + 0.3, mean, yerr=sd, fmt="_", color="black", capsize=4, markersize=14, zorder=2)
        ax.set_xticks(range(len(arms)), [label for _, label in arms], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], marker=markers[k % len(markers)], linestyle="", color="grey", label=f"student {s}")
               for k, s in enumerate(students)]
    axes[0].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(f"Each dot is one training seed ({len(study['seeds_evaluated'])} seeds, {len(students)} students); "
                 f"bar: mean ± sd; weights chosen on the {study['selection']}", fontsize=10)
    return _save(fig, out)


def study_training_curves(logs: dict[str, list[list[dict]]], out: Path) -> Path | None:
    """Each arm's training across the study's seeds (logs: arm -> one log.csv's rows per seed): the success of
    the turn it rewards, and the GRPO groups that carried no signal; thin: one seed, thick: the mean over seeds
    (10-step mean)."""
    logs = {arm: runs for arm, runs in logs.items() if runs}
    if not logs:
        return None
    panels = [("reward", "success of the rewarded turn (reward)"), ("frac_zero_std", "GRPO groups with no signal")]
    fig, axes = _subplots(1, 2, figsize=(10.5, 4))
    for (column, title), ax in zip(panels, axes):
        for arm, runs in logs.items():
            curves = [{int(r["step"]): float(r[column]) for r in rows if r.get(column) not in ("", None)} for rows in runs]
            curves = [curve for curve in curves if curve]
            if not curves:
                continue
            for curve in curves:
                ax.plot(list(curve), list(curve.values()), color=palette.colour(arm), alpha=0.2, lw=0.8)
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            mean = [sum(c[s] for c in curves) / len(curves) for s in steps]
            ax.plot(steps, _smooth(mean), color=palette.colour(arm), lw=2.2,
                    label=f"{palette.name(arm, rewards=True)} ({len(curves)} seeds)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=len(labels), frameon=False)
    fig.suptitle("Training on mined failures, every seed (thin: one seed per step; thick: mean over seeds, 10-step mean)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def study_differences(study: dict, out: Path) -> Path | None:
    """Paired-by-seed differences between arms (points) with their 95% t intervals: the study's declared endpoints
    (else each arm against another on the second try) on top, every other comparison below as diagnostics."""
    every = {**study["differences"], **study["within_arms"]}
    if not every:
        return None
    declared = [e for e in study.get("endpoints") or {} if every.get(e)]
    headline = declared or [k for k in study["differences"] if k.endswith(": second_try")]
    panels = [(("declared endpoints" if declared else "arm against arm, second try"), headline),
              ("diagnostics", [k for k in every if k not in headline])]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = _subplots(len(panels), 1, figsize=(11, 1.4 + 0.3 * len(every) + 0.6 * len(panels)), squeeze=False, sharex=True,
                          height_ratios=[len(keys) + 1.5 for _, keys in panels])
    for ax, (title, keys) in zip(axes[:, 0], panels):
        for i, key in enumerate(keys):
            d, y = every[key], len(keys) - 1 - i
            ax.plot([100 * d["ci_low"], 100 * d["ci_high"]], [y, y],
                    color=palette.SIGNIFICANT if d["ci_low"] > 0 or d["ci_high"] < 0 else palette.NOT_SIGNIFICANT)
            ax.scatter([100 * x for x in d["differences"]], [y] * len(d["differences"]), s=10, color="black", alpha=0.5, zorder=3)
            ax.scatter(100 * d["mean"], y, s=40, marker="D", color=palette.ESTIMATE, zorder=4)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(keys)), [textwrap.fill(palette.in_words(k), 70) for k in reversed(keys)], fontsize=8)
        ax.set_ylim(-0.7, len(keys) - 0.3)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("difference on the test split (percentage points)")
    axes[0, 0].legend(handles=[Line2D([], [], color=palette.SIGNIFICANT, label="95% t interval over seeds, excludes 0"),
                               Line2D([], [], color=palette.NOT_SIGNIFICANT, label="95% t interval over seeds, includes 0"),
                               Line2D([], [], marker="o", linestyle="", color="black", alpha=0.5, markersize=4,
                                      label="one seed"),
                               Line2D([], [], marker="D", linestyle="", color=palette.ESTIMATE, label="mean")],
                      fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Paired by training seed: what each arm changes", fontsize=10)
    return _save(fig, out)


FORGETTING_LABELS = dict(MODELS)


def _colour(model: str) -> str:
    """A model's colour; grey for one the palette does not name (a model added by hand to forgetting.json)."""
    try:
        return palette.colour(model)
    except KeyError:
        return palette.NOT_SIGNIFICANT


def _forgetting(run_dir: Path) -> dict | None:
    path = run_dir / "forgetting.json"
    return read_json(path) if path.exists() else None


def task_words(task: str) -> str:
    """An lm-eval task name in words: "r3kit_countdown_far_targets" -> "countdown far targets"."""
    return task.removeprefix("r3kit_").replace("_", " ")


def metric_words(metric: str) -> str:
    """lm-eval's "<metric>,<filter>" key in words: "acc,none" -> "accuracy", "exact_match,strict-match" ->
    "exact match, strict-match"."""
    name, _, how = metric.partition(",")
    name = {"acc": "accuracy", "acc_norm": "length-normalised accuracy"}.get(name, name.replace("_", " "))
    return name if how in ("", "none") else f"{name}, {how}"


def _p(value) -> str:
    return "—" if value is None else f"{value:.2g}"


def forgetting_markdown(run_dir: str | Path) -> str | None:
    """The forgetting table: per task, each model's score (+- standard error) and each difference from vanilla."""
    data = _forgetting(Path(run_dir))
    if data is None:
        return None
    names = list(data["models"])
    lines = ["| task (metric, n) | " + " | ".join(FORGETTING_LABELS.get(n, n) for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for task, entry in data["tasks"].items():
        n = entry["scores"][data["vanilla"]]["n"]
        cells = []
        for name in names:
            score = entry["scores"][name]
            cell = f"{100 * score['value']:.1f}" + (f" ± {100 * score['stderr']:.1f}" if score["stderr"] is not None else "")
            diff = entry["differences"].get(name)
            if diff is not None:
                p = diff.get("mcnemar", {}).get("p_value", diff["p_t"])
                cell += (f"<br>{100 * diff['difference']:+.1f} [{100 * diff['ci_low']:+.1f}, {100 * diff['ci_high']:+.1f}],"
                         f" p {_p(p)}")
            cells.append(cell)
        lines.append(f"| {task_words(task)} ({metric_words(entry['metric'])}, n = {n}) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Scores in %, ± lm-eval's standard error. Below each trained score: trained − vanilla on the same items "
                 "(points), its 95% t interval, and the two-sided p (exact McNemar for 0/1 scores, else paired t).")
    return "\n".join(lines) + "\n"


def forgetting_figure(run_dir: str | Path, out: Path) -> Path | None:
    data = _forgetting(Path(run_dir))
    if data is None:
        return None
    names, tasks = list(data["models"]), list(data["tasks"])
    fig, (left, right) = _subplots(1, 2, figsize=(11, 0.9 + 0.9 * len(tasks) + 2.2), width_ratios=[3, 2])
    width = 0.8 / len(names)
    for j, model in enumerate(names):
        ys, xs, err = [], [], []
        for i, task in enumerate(tasks):
            score = data["tasks"][task]["scores"][model]
            xs.append(i + (j - (len(names) - 1) / 2) * width)
            ys.append(100 * score["value"])
            err.append(196 * (score["stderr"] or 0.0))
        left.bar(xs, ys, width, yerr=err, capsize=3, label=FORGETTING_LABELS.get(model, model),
                 color=_colour(model), edgecolor="black", linewidth=0.5)
    for i, task in enumerate(tasks):
        if task in CHANCE:
            left.hlines(100 * CHANCE[task], i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=1.2, zorder=4,
                        label="chance" if i == min(k for k, t in enumerate(tasks) if t in CHANCE) else None)
    left.set_xticks(range(len(tasks)), [textwrap.fill(f"{task_words(t)} ({metric_words(data['tasks'][t]['metric'])})", 18)
                                        for t in tasks], fontsize=8)
    left.set_ylabel("score (%)")
    left.set_title("Scores, whiskers: ±1.96 standard errors (lm-eval)", fontsize=10)
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)
    rows = [(task, model) for task in tasks for model in names[1:] if model in data["tasks"][task]["differences"]]
    for k, (task, model) in enumerate(rows):
        diff = data["tasks"][task]["differences"][model]
        right.errorbar(100 * diff["difference"], k, xerr=[[100 * (diff["difference"] - diff["ci_low"])],
                                                          [100 * (diff["ci_high"] - diff["difference"])]],
                       fmt="o", color="black", markerfacecolor=_colour(model), capsize=3)
    right.axvline(0, color="grey", linewidth=1)
    right.set_yticks(range(len(rows)), [f"{task_words(task)}\n{FORGETTING_LABELS.get(model, model)}" for task, model in rows],
                     fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("trained − vanilla (points),\npaired per item, 95% t interval")
    right.set_title("What training changed", fontsize=10)
    right.grid(axis="x", alpha=0.3)
    fig.suptitle("Forgetting check: the same lm-eval tasks and settings for every model")
    return _save(fig, out)


def _subplots(nrows: int = 1, ncols: int = 1, figsize=(6.4, 4.8), **kwargs):
    """pyplot.subplots without pyplot: a free-standing Figure (nothing registered, nothing to close)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def all_figures(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    figures = run_dir / "figures"
    (figures / "table.md").parent.mkdir(parents=True, exist_ok=True)
    (figures / "table.md").write_text(table_markdown(run_dir))
    made = [figures / "table.md", table_png(run_dir, figures / "table.png"), accuracy_bars(run_dir, figures / "accuracy.png"),
            fixed_failures(run_dir, figures / "fixed_failures.png"),
            training_curves(run_dir, figures / "training_curves.png"),
            reflection_lengths(run_dir, figures / "reflection_length.png"),
            accuracy_by_difficulty(run_dir, figures / "accuracy_by_difficulty.png")]
    made.append(failure_categories(run_dir, figures / "failure_categories.png"))
    made.append(student_progress(run_dir, figures / "student.png"))
    samples = reflections_markdown(run_dir)
    if samples is not None:
        (figures / "reflections.md").write_text(samples)
        made.append(figures / "reflections.md")
    (figures / "conclusion.md").write_text(run_conclusion(run_dir))
    made.append(figures / "conclusion.md")
    table = forgetting_markdown(run_dir)
    if table is not None:
        (figures / "forgetting.md").write_text(table)
        made += [figures / "forgetting.md", forgetting_figure(run_dir, figures / "forgetting.png")]
    return [p for p in made if p is not None]
