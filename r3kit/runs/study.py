"""A study: the arms of a profile trained with several seeds and students, then compared across seeds.

Layout: study_dir/student-<s>/ is an ordinary run folder for student seed s (its student, vanilla
evaluation and mined failures are shared by every training seed that uses it); the i-th training seed
uses student students[i % len(students)] and writes train/<arm>-seed<t>/ and eval/<arm>-seed<t>/ there.
So every arm of one seed starts from the same student and the same failures, and arms pair by seed.

    run_student(run, s)   one student's whole share of the study (resumable: finished parts are kept)
    aggregate(run)        per arm: mean and sd over seeds of each test measure (vanilla: over students);
                          paired by seed, the difference between arms with its 95% t interval and
                          two-sided p-values (r3kit.eval.stats.across_seeds); within each arm, paired by seed,
                          what its own reflection adds over the controls on its own failures, and its
                          retry against vanilla's on the failures both fail first; writes study.json and
                          table.md, which open with each student's R3 preconditions (eval/preconditions.py),
                          and conclusion.md, the study's endpoints in sentences (report/conclusion.py)
Every arm's weights are chosen on the validation split (the profile's `select` section); the test
split only scores the chosen weights (and the last ones, reported beside them).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

from r3kit.core.arms import evaluation_name, variant_name
from r3kit.eval.preconditions import describe
from r3kit.eval.stats import across_seeds, mean_sd
from r3kit.infra.io import read_json, write_json
from r3kit.report import palette
from r3kit.report.conclusion import study_conclusion
from r3kit.runs.config import COMPARED, COMPARISONS, StudyConfig  # noqa: F401 (StudyConfig re-exported: the study section)
from r3kit.runs.pipeline import evaluate_stage, mine_stage, student_stage, train_stage


def student_run(run, student: int):
    """The RunConfig of one student's folder in the study."""
    if run.study is None or run.student is None:
        raise ValueError(f"profile {run.profile!r} is not a study with a student: it needs `study` and `student` sections")
    folder = run.run_dir / f"student-{student}"
    model = dataclasses.replace(run.model, name=str(folder / "student"))
    return dataclasses.replace(run, run_dir=folder, student=dataclasses.replace(run.student, seed=student), model=model)


def run_student(run, student: int, log=print) -> list[str]:
    """Student, vanilla evaluation, mining, then every arm for every training seed of this student, each
    selected on validation and scored on test. Parts already finished are skipped; returns what ran."""

    if student not in run.study.students:
        raise ValueError(f"student {student} is not one of the study's students {run.study.students}")
    r = student_run(run, student)
    d = r.run_dir

    def evaluated(which):
        return (d / "metrics.json").exists() and which in read_json(d / "metrics.json")

    steps = [("student", lambda: student_stage(r), lambda: (d / "student.json").exists()),
             ("evaluate vanilla", lambda: evaluate_stage(r, "vanilla"), lambda: evaluated("vanilla")),
             ("mine failures", lambda: mine_stage(r), lambda: (d / "failures" / "manifest.json").exists())]
    for seed in run.study.seeds_of(student):
        for arm in run.study.arms:
            name = variant_name(arm, seed)
            steps += [(f"train {name}", lambda a=arm, s=seed: train_stage(r, a, s),
                       lambda n=name: (d / "train" / n / "summary.json").exists()),
                      (f"evaluate {name}", lambda n=name: evaluate_stage(r, n), lambda n=name: evaluated(n))]
    ran = []
    for name, stage, done in steps:
        if done():
            log(f"student {student}, {name}: done earlier")
            continue
        log(f"student {student}, {name}: running")
        stage()
        ran.append(name)
    return ran


MEASURES = {
    "first_try": "first try",
    "second_try": "second try (own reflection)",
    "retry_no_reflection": "second try, no reflection",
    "retry_generic_reflection": "second try, generic reflection",
}


def _unit(metrics: dict, which: str) -> dict[str, Any]:
    m = metrics[which]
    out = {k: m[k]["accuracy"] for k in MEASURES if k in m}
    own = m.get("own_failures") or {}
    for condition in ("reflection", "no_reflection", "generic_reflection"):
        if condition in own:
            out[f"own_failures_{condition}"] = own[condition]["accuracy"]
    if own:
        out["own_failures_n"] = own["reflection"]["n"]
        for control in ("no_reflection", "generic_reflection"):  # what the reflection adds over a control
            if control in own:
                out[f"reflection_gain_over_{control}"] = own["reflection"]["accuracy"] - own[control]["accuracy"]
    frozen = m.get("frozen_retrier")
    if frozen:  # the arm's reflection, vanilla's retry; against vanilla's reflection and retry
        out["frozen_retrier"] = frozen["model"]["accuracy"]
        out["frozen_retrier_vanilla"] = frozen["baseline"]["accuracy"]
    fixed = m.get("on_vanilla_failures")
    if fixed:
        out["on_vanilla_failures"] = fixed["model"]["accuracy"]
        out["on_vanilla_failures_vanilla"] = fixed["baseline"]["accuracy"]
        if "both_failed_first" in fixed:
            out["both_failed_first"] = fixed["both_failed_first"]["model"]["accuracy"]
            out["both_failed_first_vanilla"] = fixed["both_failed_first"]["baseline"]["accuracy"]
            out["both_failed_first_n"] = fixed["both_failed_first"]["model"]["n"]
    for name, entry in (m.get("reflections_read") or {}).items():  # how its reflections on its own failures read
        if entry:
            out[f"reflections_{name}"] = entry["accuracy"]
    for bound in ("swapped", "oracle"):  # vanilla's bounds: its retry after another problem's reflection, the solver's
        if m.get(f"{bound}_reflection"):
            out[f"{bound}_reflection"] = m[f"{bound}_reflection"][bound]["accuracy"]
            out[f"{bound}_reflection_own"] = m[f"{bound}_reflection"]["own"]["accuracy"]
    if m.get("retry_copies_reflection"):
        out["retry_copies_reflection"] = m["retry_copies_reflection"]["accuracy"]
    if "checkpoint" in m:
        out["selected_step"] = m["checkpoint"]["step"]
    return out


def collect(run) -> list[dict[str, Any]]:
    """One row per evaluated arm and training seed, and one per student for vanilla (seed None), with
    its test measures, from the saved metrics only."""

    rows = []
    for student in run.study.students:
        folder = run.run_dir / f"student-{student}"
        if not (folder / "metrics.json").exists():
            continue
        metrics = read_json(folder / "metrics.json")
        if "vanilla" in metrics:
            rows.append({"arm": "vanilla", "seed": None, "student": student, **_unit(metrics, "vanilla")})
        for seed in run.study.seeds_of(student):
            for arm in run.study.arms:
                which = evaluation_name(arm, seed)
                if which not in metrics:
                    continue
                row = {"arm": arm, "seed": seed, "student": student, **_unit(metrics, which)}
                summary = folder / "train" / which / "summary.json"
                if summary.exists():
                    row["generated_tokens"] = read_json(summary).get("generated_tokens")
                checkpoint = metrics[which].get("checkpoint") or {}
                last = metrics.get(f"{which}-last") or (  # the chosen weights are the last ones, or were not scored
                    metrics[which] if checkpoint.get("step") == checkpoint.get("last") else None)
                if last is not None:
                    row["first_try_last"], row["second_try_last"] = last["first_try"]["accuracy"], last["second_try"]["accuracy"]
                rows.append(row)
    return rows




def aggregate(run) -> dict[str, Any]:
    """study.json: per-seed rows, per-arm mean/sd, and paired-by-seed differences between arms and within arms."""

    rows = collect(run)
    trained = [r for r in rows if r["arm"] != "vanilla"]
    if not trained:
        raise ValueError(f"{run.run_dir} holds no evaluated study runs yet: run the study's students first")
    arms = ["vanilla", *run.study.arms]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, float)})
    summary = {arm: {k: mean_sd([r[k] for r in rows if r["arm"] == arm and r.get(k) is not None])
                     for k in keys if any(r["arm"] == arm and r.get(k) is not None for r in rows)}
               for arm in arms if any(r["arm"] == arm for r in rows)}
    vanilla = {r["student"]: r for r in rows if r["arm"] == "vanilla"}
    by = {(r["arm"], r["seed"]): r for r in trained}
    for seed in run.study.seeds:  # vanilla, paired with each seed through that seed's student
        if run.study.student_of(seed) in vanilla:
            by[("vanilla", seed)] = vanilla[run.study.student_of(seed)]

    def paired(a_key, b_key, a_arm, b_arm):
        seeds = [t for t in run.study.seeds if (a_arm, t) in by and (b_arm, t) in by
                 and by[(a_arm, t)].get(a_key) is not None and by[(b_arm, t)].get(b_key) is not None]
        if len(seeds) < 2:
            return None
        return {"seeds": seeds, **across_seeds([by[(a_arm, t)][a_key] for t in seeds], [by[(b_arm, t)][b_key] for t in seeds])}

    differences = {}
    for a, b in COMPARISONS:
        for k in COMPARED:
            if (d := paired(k, k if b != "vanilla" or k != "second_try_last" else "second_try", a, b)) is not None:
                differences[f"{a} - {b}: {k}"] = d
    within = {}
    students = sorted(vanilla)
    for control in ("no_reflection", "generic_reflection"):  # vanilla: one value per student, not per seed
        if len(students) >= 2 and all(vanilla[s].get(f"own_failures_{control}") is not None for s in students):
            within[f"vanilla: own reflection - {control}, on its own failures (paired by student)"] = {
                "students": students, **across_seeds([vanilla[s]["own_failures_reflection"] for s in students],
                                                     [vanilla[s][f"own_failures_{control}"] for s in students])}
    for arm in arms[1:]:
        for control in ("no_reflection", "generic_reflection"):
            if (d := paired("own_failures_reflection", f"own_failures_{control}", arm, arm)) is not None:
                within[f"{arm}: own reflection - {control}, on its own failures"] = d
        if (d := paired("on_vanilla_failures", "on_vanilla_failures_vanilla", arm, arm)) is not None:
            within[f"{arm} - vanilla: retry on vanilla's failed attempts"] = d
        if (d := paired("frozen_retrier", "frozen_retrier_vanilla", arm, arm)) is not None:
            differences[f"{arm} - vanilla: frozen_retrier"] = d  # its reflection, vanilla's retry, on vanilla's failures
        if (d := paired("both_failed_first", "both_failed_first_vanilla", arm, arm)) is not None:
            within[f"{arm} - vanilla: retry on vanilla's failures that {arm} also fails first"] = d
    gates = {}  # R3's preconditions, as each student's folder recorded them before its first training
    for student in run.study.students:
        path = student_run(run, student).run_dir / "preconditions.json"
        gates[str(student)] = read_json(path) if path.exists() else None
    endpoints = {e: differences.get(e) for e in run.study.endpoints}  # None until two seeds of it are evaluated
    study = {"profile": run.profile, "seeds": list(run.study.seeds), "students": list(run.study.students),
             "endpoints": endpoints,
             "preconditions": gates, "seeds_evaluated": sorted({r["seed"] for r in trained}),
             "selection": "validation split" if run.select else "last weights",
             "rows": rows, "summary": summary, "differences": differences, "within_arms": within}
    write_json(run.run_dir / "study.json", study)
    (run.run_dir / "table.md").write_text(table_markdown(study))
    (run.run_dir / "conclusion.md").write_text(study_conclusion(study))
    return study


def _pct(entry: dict) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['sd']:.1f}"


def _difference(d: dict) -> str:
    pt = "—" if d.get("p_t") is None else f"{d['p_t']:.2g}"
    return (f"{100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], p (t) {pt}, "
            f"p (Wilcoxon) {d['p_wilcoxon']:.2g}")


def table_markdown(study: dict) -> str:
    n = len(study["seeds_evaluated"])
    lines = []
    for student, record in (study.get("preconditions") or {}).items():  # first: could R3 learn here at all?
        gate = describe(record)
        lines += [f"Student {student}: {gate[0]}", *(f"- {line.strip()}" for line in gate[1:]), ""]
    if study.get("endpoints"):
        lines += ["Endpoints, declared in the profile before the run (percentage points, paired by training seed, "
                  "two-sided): mean [95% t interval], t-test p, Wilcoxon signed-rank p", ""]
        lines += [f"- {name}: {_difference(d) if d else 'not yet measured (fewer than 2 seeds evaluated)'}"
                  for name, d in study["endpoints"].items()] + [""]
    lines += [f"Test accuracy %, mean ± sd over {n} training seeds ({len(study['students'])} students; vanilla: over the "
             f"students); weights chosen on the {study['selection']}", "",
             "| arm | " + " | ".join(MEASURES.values()) + " | retry copies reflection | tokens generated in training |",
             "|---" * (len(MEASURES) + 3) + "|"]
    for arm, entry in study["summary"].items():
        cells = [_pct(entry[k]) if k in entry else "—" for k in MEASURES]
        copy = _pct(entry["retry_copies_reflection"]) if "retry_copies_reflection" in entry else "—"
        tokens = [r.get("generated_tokens") for r in study["rows"] if r["arm"] == arm and r.get("generated_tokens")]
        cells += [copy, f"{sum(tokens) / len(tokens) / 1e6:.2f} M" if tokens else "—"]
        lines.append(f"| {palette.name(arm)} | " + " | ".join(cells) + " |")
    vanilla = study["summary"].get("vanilla", {})
    bounds = [f"{words} {_pct(vanilla[f'{b}_reflection'])} (own reflection on the same attempts "
              f"{_pct(vanilla[f'{b}_reflection_own'])})" for b, words in (("swapped", "another problem's reflection"),
                                                                        ("oracle", "the task's solver's reflection"))
              if f"{b}_reflection" in vanilla]
    if bounds:
        lines += ["", f"Bounds, vanilla's retry on its failed first attempts after {'; after '.join(bounds)}; mean ± sd "
                  "over the students"]
    lines += ["", "Differences, paired by training seed (percentage points): mean [95% t interval], two-sided paired "
              "t-test p, Wilcoxon signed-rank p (two-sided; with n pairs it cannot go below 2 / 2^n)", "", "| comparison | mean | 95% interval | p (t) | p (Wilcoxon) |",
              "|---|---|---|---|---|"]
    for name, d in {**study["differences"], **study["within_arms"]}.items():
        pt = "—" if d.get("p_t") is None else f"{d['p_t']:.2g}"
        lines.append(f"| {name} | {100 * d['mean']:+.1f} | [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] | "
                     f"{pt} | {d['p_wilcoxon']:.2g} |")
    return "\n".join(lines) + "\n"


def training_logs(run) -> dict[str, list[list[dict]]]:
    """Each arm's training log (log.csv rows), one per training seed that finished (summary.json written), in
    seed order."""
    logs: dict[str, list[list[dict]]] = {arm: [] for arm in run.study.arms}
    for seed in run.study.seeds:
        folder = run.run_dir / f"student-{run.study.student_of(seed)}" / "train"
        for arm in logs:
            path = folder / variant_name(arm, seed) / "log.csv"
            if (path.parent / "summary.json").exists():
                with open(path) as handle:
                    logs[arm].append(list(csv.DictReader(handle)))
    return logs


def figures(run) -> list[Path]:
    """study_seeds.png (every seed as a dot, per arm and measure), study_differences.png (paired differences
    with their intervals), from study.json, and study_training.png (each arm's reward and signal per step,
    every seed), from the training logs."""
    from r3kit.report import figures as plots  # matplotlib: only where a study draws its figures

    study = read_json(run.run_dir / "study.json")
    out = run.run_dir / "figures"
    return [p for p in (plots.study_seeds(study, out / "study_seeds.png"),
                        plots.study_differences(study, out / "study_differences.png"),
                        plots.study_training_curves(training_logs(run), out / "study_training.png")) if p is not None]
