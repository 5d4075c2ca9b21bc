"""What a run or a study shows, in sentences written from its saved files: no number here is typed by hand.

Each results notebook ends with one. A conclusion says, in this order:
    1. whether R3's preconditions held (eval/preconditions.py): where they failed or were not measured, the result
       is read as how R3 behaves in that setting, never as a verdict on whether R3 teaches reflection;
    2. what was compared, on which split, and the estimate with its interval and two-sided test
       (a run: each trained model against vanilla on the same test problems, exact McNemar; a study: the endpoints
       declared in its profile, paired by training seed, t interval, t-test and Wilcoxon);
    3. what the design cannot show (one seed has no spread over seeds; the verifier judges the final answer only).
"""

from __future__ import annotations

from pathlib import Path

from r3kit.eval.preconditions import describe
from r3kit.infra.io import read_json
from r3kit.report.palette import in_words, name

SIGNIFICANCE = 0.05  # the two-sided level the sentences use; every p is printed beside them


def _pct(entry: dict) -> str:
    return f"{100 * entry['accuracy']:.1f}% [{100 * entry['ci_low']:.1f}, {100 * entry['ci_high']:.1f}]"


def gate_sentence(record: dict | None) -> str:
    """Whether R3 could be tested at all, from a preconditions.json record."""
    if not record:
        return ("R3's preconditions were not recorded for this run, so whether a reflection could help here is "
                "unknown: read what follows as a measurement of this setup, not as a verdict on whether R3 teaches "
                "reflection.")
    if not record.get("measured"):
        return (f"R3's preconditions were not measured ({record.get('reason', 'no reason recorded')}): read what follows "
                "as a measurement of this setup, not as a verdict on whether R3 teaches reflection.")
    if record["passed"]:
        return "R3's preconditions held (" + "; ".join(line.strip() for line in describe(record)[1:-1]) + "), " \
               "so this tests whether R3 teaches reflection where a reflection can help."
    return (f"R3's preconditions failed ({'; '.join(record['failed'])}), so what follows says how R3 behaves where a "
            "reflection cannot help, not whether R3 teaches reflection.")


def _verdict(gained: int, lost: int, p: float, who: str, than: str, where: str) -> str:
    """A sentence, capitalised: which side the exact test favours, or that it detected no difference."""
    if p < SIGNIFICANCE:
        sentence = f"{who} did {'better' if gained > lost else 'worse'} than {than} {where} (p = {p:.2g})."
    else:
        sentence = f"no difference between {who} and {than} was detected {where} (p = {p:.2g})."
    return sentence[0].upper() + sentence[1:]


def run_conclusion(run_dir: str | Path) -> str:
    """The conclusion of one run folder (metrics.json, preconditions.json), as markdown."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "metrics.json")
    gate = run_dir / "preconditions.json"
    lines = ["## Conclusion", "", gate_sentence(read_json(gate) if gate.exists() else None), ""]
    vanilla = metrics.get("vanilla")
    trained = [key for key in ("trained", "grpo", "retry_control") if key in metrics]
    if vanilla is None or not trained:
        return "\n".join(lines + ["Nothing is compared yet: the run has no evaluated trained model beside vanilla.", ""])
    n = vanilla["second_try"]["n"]
    for key in trained:
        entry = metrics[key]
        paired = entry.get("paired_vs_vanilla", {}).get("second_try")
        step = (entry.get("checkpoint") or {}).get("step")
        chosen = f" (step {step}, chosen on validation)" if step is not None else ""
        sentence = (f"- **{name(key, rewards=True)}**{chosen}: second try {_pct(entry['second_try'])} against vanilla's "
                    f"{_pct(vanilla['second_try'])}, Wilson 95% intervals, on the same {n} test problems")
        if paired:
            sentence += (f"; problem by problem {paired['gained']} gained and {paired['lost']} lost (exact two-sided "
                         f"McNemar). " + _verdict(paired["gained"], paired["lost"], paired["p_value"], name(key),
                                                  "vanilla", "on the second try"))
        else:
            sentence += "."
        frozen = entry.get("frozen_retrier")
        if frozen:
            fp = frozen["paired"]
            sentence += (f" Its reflections with the vanilla model's retry (what the reflection alone adds): "
                         f"{_pct(frozen['model'])} against vanilla's own {_pct(frozen['baseline'])} on vanilla's "
                         f"{frozen['baseline']['n']} failed first attempts. "
                         + _verdict(fp["gained"], fp["lost"], fp["p_value"], f"{name(key)}'s reflections",
                                    "vanilla's", "there"))
        lines.append(sentence)
    lines += ["", "What this does not show: it is one training seed from one starting model, so the spread a user would "
              "see across seeds is not measured (a study profile measures it); and the verifier judges the final answer "
              "only, not the steps written before it.", ""]
    return "\n".join(lines)


def study_conclusion(study: dict) -> str:
    """The conclusion of a study (study.json), as markdown: its declared endpoints first."""
    gates = study.get("preconditions") or {}
    lines = ["## Conclusion", ""]
    if gates:
        lines += [f"- Student {student}: {gate_sentence(record)}" for student, record in gates.items()] + [""]
    else:
        lines += [gate_sentence(None), ""]
    n = len(study.get("seeds_evaluated", []))
    endpoints = study.get("endpoints") or {}
    compared = endpoints or {k: d for k, d in study["differences"].items() if k.endswith(": second_try")}
    lines.append(("Endpoints declared in the study's profile" if endpoints else
                  "No endpoints were declared, so these are read as exploratory: each arm against another on the "
                  "second try") + f", on the test split, paired by training seed ({n} seeds evaluated, "
                 f"{len(study.get('students', []))} students; weights chosen on the {study.get('selection', 'validation split')}):")
    for key, d in compared.items():
        if d is None:
            lines.append(f"- {in_words(key)}: not yet measured (fewer than 2 seeds evaluated).")
            continue
        p = d.get("p_t")
        first, second = key.split(":")[0].split(" - ")
        if p is None:  # every seed differed by the same amount: no spread, so no t-test
            verdict = f"every seed differed by the same amount, so the t-test is undefined (Wilcoxon p = {d['p_wilcoxon']:.2g})"
        elif p < SIGNIFICANCE:
            verdict = f"{name(first if d['mean'] > 0 else second)} did better"
        else:
            verdict = "no difference detected"
        p_text = f"t-test p = {p:.2g}, " if p is not None else ""
        lines.append(f"- {in_words(key)}: {100 * d['mean']:+.1f} points [{100 * d['ci_low']:+.1f}, "
                     f"{100 * d['ci_high']:+.1f}] over {d.get('n', n)} paired seeds (95% t interval; {p_text}Wilcoxon "
                     f"p = {d['p_wilcoxon']:.2g}): {verdict}.")
    lines += ["", "What this does not show: differences smaller than the intervals above; other students, tasks or "
              "model sizes; and the steps a model writes before its final answer, which the verifier does not judge.",
              ""]
    return "\n".join(lines)
