"""A study: the arms of a profile trained with several seeds and students, then compared across seeds.

Layout: study_dir/student-<s>/ is an ordinary run folder for student seed s (its student, vanilla
evaluation and mined failures are shared by every training seed that uses it); training seed t uses
student students[t % len(students)] and writes train/<arm>-seed<t>/ and eval/<arm>-seed<t>/ there.
So every arm of one seed starts from the same student and the same failures, and arms pair by seed.

    run_student(run, s)   one student's whole share of the study (resumable: finished parts are kept)
    aggregate(run)        per arm: mean and sd over seeds of each test measure; paired by seed, the
                          difference between arms with its 95% t interval and two-sided p-values
                          (r3kit.stats.across_seeds); writes study.json and table.md
Every arm's weights are chosen on the validation split (the profile's `select` section); the test
split only scores the chosen weights (and the last ones, reported beside them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r3kit.io import read_json, write_json


@dataclass
class StudyConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # training seeds (one run of every arm each)
    students: tuple[int, ...] = (0, 1)  # student seeds; training seed t uses students[t % len(students)]
    arms: tuple[str, ...] = ("r3", "grpo", "retry_control")

    def validate(self) -> None:
        from r3kit.pipeline import ARMS

        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a study needs at least 2 distinct training seeds, got {self.seeds}")
        if not self.students or len(set(self.students)) != len(self.students):
            raise ValueError(f"study.students must be distinct student seeds, got {self.students}")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or "r3" not in self.arms:
            raise ValueError(f"study.arms must include 'r3' and come from {ARMS}, got {self.arms}")

    def student_of(self, seed: int) -> int:
        return self.students[self.seeds.index(seed) % len(self.students)]

    def seeds_of(self, student: int) -> list[int]:
        return [t for t in self.seeds if self.student_of(t) == student]


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
    from r3kit.pipeline import evaluate_stage, mine_stage, student_stage, train_stage, variant_name

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
    fixed = m.get("on_vanilla_failures")
    if fixed:
        out["on_vanilla_failures"] = fixed["model"]["accuracy"]
        if "both_failed_first" in fixed:
            out["both_failed_first"] = fixed["both_failed_first"]["model"]["accuracy"]
            out["both_failed_first_vanilla"] = fixed["both_failed_first"]["baseline"]["accuracy"]
            out["both_failed_first_n"] = fixed["both_failed_first"]["model"]["n"]
    if m.get("retry_copies_reflection"):
        out["retry_copies_reflection"] = m["retry_copies_reflection"]["accuracy"]
    if "checkpoint" in m:
        out["selected_step"] = m["checkpoint"]["step"]
    return out


def collect(run) -> list[dict[str, Any]]:
    """One row per (arm or vanilla, training seed) with its test measures, from the saved metrics only."""
    from r3kit.pipeline import evaluation_name

    rows = []
    for seed in run.study.seeds:
        student = run.study.student_of(seed)
        folder = run.run_dir / f"student-{student}"
        if not (folder / "metrics.json").exists():
            continue
        metrics = read_json(folder / "metrics.json")
        if "vanilla" in metrics:
            rows.append({"arm": "vanilla", "seed": seed, "student": student, **_unit(metrics, "vanilla")})
        for arm in run.study.arms:
            which = evaluation_name(arm, seed)
            if which in metrics:
                row = {"arm": arm, "seed": seed, "student": student, **_unit(metrics, which)}
                summary = folder / "train" / which / "summary.json"
                if summary.exists():
                    row["generated_tokens"] = read_json(summary).get("generated_tokens")
                if f"{which}-last" in metrics:
                    row["second_try_last"] = metrics[f"{which}-last"]["second_try"]["accuracy"]
                    row["first_try_last"] = metrics[f"{which}-last"]["first_try"]["accuracy"]
                else:
                    row["second_try_last"], row["first_try_last"] = row.get("second_try"), row.get("first_try")
                rows.append(row)
    return rows


COMPARISONS = (("r3", "vanilla"), ("r3", "grpo"), ("r3", "retry_control"), ("grpo", "vanilla"), ("retry_control", "vanilla"))
COMPARED = ("first_try", "second_try", "on_vanilla_failures", "both_failed_first")


def aggregate(run) -> dict[str, Any]:
    """study.json: per-seed rows, per-arm mean/sd, and paired-by-seed differences between arms."""
    from r3kit.stats import across_seeds, mean_sd

    rows = collect(run)
    if not rows:
        raise ValueError(f"{run.run_dir} holds no evaluated study runs yet: run the study's students first")
    arms = ["vanilla", *run.study.arms]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, float)})
    summary = {arm: {k: mean_sd([r[k] for r in rows if r["arm"] == arm and r.get(k) is not None])
                     for k in keys if any(r["arm"] == arm and r.get(k) is not None for r in rows)}
               for arm in arms if any(r["arm"] == arm for r in rows)}
    by = {(r["arm"], r["seed"]): r for r in rows}
    differences = {}
    for a, b in COMPARISONS:
        seeds = [t for t in run.study.seeds if (a, t) in by and (b, t) in by]
        if len(seeds) < 2:
            continue
        for k in COMPARED:
            if all(by[(a, t)].get(k) is not None and by[(b, t)].get(k) is not None for t in seeds):
                differences[f"{a} - {b}: {k}"] = {"seeds": seeds, **across_seeds(
                    [by[(a, t)][k] for t in seeds], [by[(b, t)][k] for t in seeds])}
    own = {}
    for arm in arms:
        seeds = [t for t in run.study.seeds if (arm, t) in by and by[(arm, t)].get("own_failures_reflection") is not None]
        if len(seeds) >= 2:
            for control in ("no_reflection", "generic_reflection"):
                own[f"{arm}: reflection - {control}"] = {"seeds": seeds, **across_seeds(
                    [by[(arm, t)]["own_failures_reflection"] for t in seeds],
                    [by[(arm, t)][f"own_failures_{control}"] for t in seeds])}
    complete = sorted({r["seed"] for r in rows if r["arm"] != "vanilla"})
    study = {"profile": run.profile, "seeds": list(run.study.seeds), "students": list(run.study.students),
             "seeds_evaluated": complete, "selection": "validation split" if run.select else "last weights",
             "rows": rows, "summary": summary, "differences": differences, "own_failures": own}
    write_json(run.run_dir / "study.json", study)
    (run.run_dir / "table.md").write_text(table_markdown(study))
    return study


LABELS = {"vanilla": "vanilla", "r3": "R3", "grpo": "plain GRPO (first attempts)", "retry_control": "retry-reward control (fair)"}


def _pct(entry: dict) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['sd']:.1f}"


def table_markdown(study: dict) -> str:
    n = len(study["seeds_evaluated"])
    lines = [f"Test accuracy %, mean ± sd over {n} training seeds ({len(study['students'])} students); weights chosen "
             f"on the {study['selection']}", "",
             "| arm | " + " | ".join(MEASURES.values()) + " | retry copies reflection | tokens generated in training |",
             "|---" * (len(MEASURES) + 3) + "|"]
    for arm, entry in study["summary"].items():
        cells = [_pct(entry[k]) if k in entry else "—" for k in MEASURES]
        copy = _pct(entry["retry_copies_reflection"]) if "retry_copies_reflection" in entry else "—"
        tokens = [r.get("generated_tokens") for r in study["rows"] if r["arm"] == arm and r.get("generated_tokens")]
        cells += [copy, f"{sum(tokens) / len(tokens) / 1e6:.2f} M" if tokens else "—"]
        lines.append(f"| {LABELS.get(arm, arm)} | " + " | ".join(cells) + " |")
    lines += ["", "Differences, paired by training seed (percentage points): mean [95% t interval], two-sided paired "
              "t-test p, exact Wilcoxon signed-rank p", "", "| comparison | mean | 95% interval | p (t) | p (Wilcoxon) |",
              "|---|---|---|---|---|"]
    for name, d in {**study["differences"], **study["own_failures"]}.items():
        pw = "—" if d.get("p_wilcoxon") is None else f"{d['p_wilcoxon']:.2g}"
        lines.append(f"| {name} | {100 * d['mean']:+.1f} | [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] | "
                     f"{d['p_t']:.2g} | {pw} |")
    return "\n".join(lines) + "\n"


def figures(run) -> list[Path]:
    """study_seeds.png (every seed as a dot, per arm and measure) and study_differences.png (paired
    differences with their intervals), from study.json."""
    from r3kit import plots

    study = read_json(run.run_dir / "study.json")
    out = run.run_dir / "figures"
    return [p for p in (plots.study_seeds(study, out / "study_seeds.png"),
                        plots.study_differences(study, out / "study_differences.png")) if p is not None]
