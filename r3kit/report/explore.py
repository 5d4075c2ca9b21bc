"""Transcript explorer: what the models actually wrote, from a run folder's saved transcripts only.

    episodes(run_dir)              one row per (model, problem, condition): the problem, its difficulty, the
                                   first attempt with its verdict and reason, the reflection, the retry and
                                   the retry's verdict and reason. `model` is the eval folder's name (vanilla,
                                   trained = R3, grpo, retry_control, <arm>-seed<N>; "-last": the last weights
                                   where validation chose an earlier checkpoint). Condition "on_vanilla_attempt"
                                   is a trained model reflecting on vanilla's failed first attempt.
    fixed_and_broken(df, model)    problems the model passes and the baseline fails (fixed), and the reverse
    reflections_by_outcome(df, m)  the reflections after which the retry passed, and those after which it failed
    failure_reasons(df)            the verifier's reasons by kind (Task.reason_category), counted per model
    side_by_side(df, index)        one problem across every model
    browse(df)                     an ipywidgets pager with filters; a plain DataFrame where widgets cannot
                                   show (papermill, scripts, CI)
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from r3kit.infra.io import read_jsonl
from r3kit.infra.notebook import interactive
from r3kit.tasks.base import Task, mask_particulars

COLUMNS = ["model", "index", "difficulty", "problem", "attempt", "first_ok", "first_reason", "condition", "reflection",
           "retry", "ok", "reason", "reflection_tokens", "retry_tokens"]


def _rows(model: str, transcripts: list[dict], only: str | None = None) -> list[dict]:
    rows = []
    for t in transcripts:
        first = t["first"]
        base = {"model": model, "index": t["index"], "difficulty": t.get("difficulty"),
                "problem": first["messages"][-2]["content"], "attempt": first["messages"][-1]["content"],
                "first_ok": first["verdict"]["ok"], "first_reason": first["verdict"]["reason"]}
        second = t.get("second") or {}
        if not second:  # solved on the first try: no second turn
            rows.append({**base, "condition": None})
        for condition, turn in second.items():
            messages = turn["messages"]
            reflected = len(messages) == 4  # reflection request, reflection, retry request, retry
            rows.append({**base, "condition": only or condition, "reflection": messages[1]["content"] if reflected else None,
                         "retry": messages[-1]["content"], "ok": turn["verdict"]["ok"], "reason": turn["verdict"]["reason"],
                         "reflection_tokens": turn.get("reflection_tokens"), "retry_tokens": turn.get("retry_tokens")})
    return rows


def episodes(run_dir: str | Path) -> pd.DataFrame:
    """Every evaluated model's test transcripts in `run_dir` (a run folder, or a study's student folder)."""
    run_dir = Path(run_dir)
    folders = sorted(p.parent for p in (run_dir / "eval").glob("*/transcripts.jsonl"))
    if not folders:
        raise ValueError(f"no evaluation transcripts under {run_dir / 'eval'}: run the evaluation notebook (02) first")
    order = {"vanilla": 0, "trained": 1}
    rows = []
    for folder in sorted(folders, key=lambda f: (order.get(f.name, 2), f.name)):
        rows += _rows(folder.name, read_jsonl(folder / "transcripts.jsonl"))
        if (folder / "on_vanilla_failures.jsonl").exists():
            rows += _rows(folder.name, read_jsonl(folder / "on_vanilla_failures.jsonl"), only="on_vanilla_attempt")
    return pd.DataFrame(rows, columns=COLUMNS)


def _own(df: pd.DataFrame) -> pd.DataFrame:
    """Each model's own episode of each problem: the first attempt, and the retry after its own reflection."""
    return df[df["condition"].isna() | (df["condition"] == "reflection")]


def _firsts(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that carry a model's own first attempt (every condition but a reflection on vanilla's attempt)."""
    return df[df["condition"] != "on_vanilla_attempt"]


def _models(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["model"]))  # as episodes() orders them: vanilla, trained, then the rest


def outcomes(df: pd.DataFrame, measure: str = "second_try") -> pd.DataFrame:
    """Problems x models: passed on the first try, or within two tries (the own-reflection retry)."""
    if measure not in ("first_try", "second_try"):
        raise ValueError(f"measure must be 'first_try' or 'second_try', got {measure!r}")
    own = _firsts(df) if measure == "first_try" else _own(df)
    first = own["first_ok"].astype(bool)
    passed = first if measure == "first_try" else first | own["ok"].fillna(False).astype(bool)
    table = passed.groupby([own["index"], own["model"]]).any().unstack("model")  # NaN: a model lacks that problem
    return table[[m for m in _models(df) if m in table]]


def fixed_and_broken(df: pd.DataFrame, model: str, baseline: str = "vanilla", measure: str = "second_try") -> pd.DataFrame:
    """The problems whose outcome changed from `baseline` to `model`: change = "fixed" or "broken", with both
    models' attempts, reflections and retries side by side."""
    table = outcomes(df, measure)
    for name in (model, baseline):
        if name not in table:
            raise ValueError(f"no transcripts of {name!r}; the run has {list(table.columns)}")
    both = table[[model, baseline]].dropna().astype(bool)  # the problems both models were evaluated on
    change = pd.Series(None, index=both.index, dtype=object)
    change[both[model] & ~both[baseline]] = "fixed"
    change[~both[model] & both[baseline]] = "broken"
    changed = change.dropna()
    own = _own(df)
    own = own[own["index"].isin(changed.index)]
    wide = own.set_index(["index", "model"])[["problem", "attempt", "reflection", "retry"]].unstack("model")
    keep = [(c, m) for c in ("attempt", "reflection", "retry") for m in (baseline, model)]
    out = wide.reindex(columns=pd.MultiIndex.from_tuples(keep), index=changed.index)
    out.columns = [f"{m}: {c}" for c, m in keep]
    out.insert(0, "problem", wide[("problem", baseline)] if len(wide) else None)
    out.insert(0, "change", changed)
    return out.sort_values(["change", "problem"]).reset_index()


def reflections_by_outcome(df: pd.DataFrame, model: str, condition: str = "reflection") -> pd.DataFrame:
    """The model's reflections on its failed attempts (or on vanilla's, condition "on_vanilla_attempt"),
    with led_to = "pass" or "fail": what the retry after each one did."""
    rows = df[(df["model"] == model) & (df["condition"] == condition)]
    if rows.empty:
        raise ValueError(f"no {condition!r} episodes of {model!r}; models: {sorted(df['model'].unique())}, "
                         f"conditions: {sorted(df['condition'].dropna().unique())}")
    out = rows.assign(led_to=rows["ok"].map({True: "pass", False: "fail"}))
    return out[["index", "problem", "attempt", "first_reason", "reflection", "retry", "led_to", "reason",
                "reflection_tokens"]].sort_values(["led_to", "index"], ascending=[False, True]).reset_index(drop=True)


def failure_reasons(df: pd.DataFrame, task=None, turn: str = "first") -> pd.DataFrame:
    """Counts of the verifier's reasons by kind, per model: on failed first attempts (turn="first") or on
    failed own-reflection retries (turn="retry"). `task` groups the reasons (default: particulars masked)."""

    category = task.reason_category if isinstance(task, Task) else mask_particulars
    if turn == "first":
        rows = _firsts(df).drop_duplicates(["model", "index"])
        reasons = rows.loc[~rows["first_ok"].astype(bool), ["model", "first_reason"]].rename(columns={"first_reason": "reason"})
    elif turn == "retry":
        rows = df[(df["condition"] == "reflection") & (df["ok"] == False)]  # noqa: E712 (a column, not a bool)
        reasons = rows[["model", "reason"]]
    else:
        raise ValueError(f"turn must be 'first' or 'retry', got {turn!r}")
    counts = reasons.assign(kind=reasons["reason"].map(category)).groupby(["kind", "model"]).size().unstack("model")
    counts = counts.reindex(columns=_models(df)).fillna(0).astype(int)  # a model with no failure: a column of 0
    return counts.loc[counts.sum(axis=1).sort_values(ascending=False).index]


def side_by_side(df: pd.DataFrame, index: int) -> pd.DataFrame:
    """Problem `index` (a test-split position) across every model: attempt, reflection, retry, verdicts."""
    rows = _own(df)
    rows = rows[rows["index"] == index]
    if rows.empty:
        raise ValueError(f"no problem with index {index}; indices run {df['index'].min()}..{df['index'].max()}")
    return rows.set_index("model")[["problem", "attempt", "first_ok", "first_reason", "reflection", "retry", "ok", "reason"]]


def _episode_html(row: pd.Series) -> str:
    def block(title, text, ok=None):
        mark = "" if ok is None else (" ✅" if ok else " ❌")
        return (f"<div style='margin:4px 0'><b>{html.escape(title)}{mark}</b><pre style='white-space:pre-wrap;margin:2px 0'>"
                f"{html.escape(str(text))}</pre></div>")

    parts = [f"<div><b>{html.escape(str(row['model']))}</b> · problem {row['index']} · {html.escape(str(row['difficulty']))}"
             f" · condition {html.escape(str(row['condition']))}</div>", block("problem", row["problem"]),
             block(f"first attempt ({row['first_reason']})", row["attempt"], row["first_ok"])]
    if isinstance(row["reflection"], str):
        parts.append(block("reflection", row["reflection"]))
    if isinstance(row["retry"], str):
        parts.append(block(f"retry ({row['reason']})", row["retry"], bool(row["ok"])))
    return "".join(parts)


def browse(df: pd.DataFrame, widgets: bool | None = None):
    """Page through episodes, filtered by model, condition and the retry's verdict. Where widgets cannot
    show (widgets=False, or None and not notebook.interactive()), returns the DataFrame for plain display."""
    if not (interactive() if widgets is None else widgets):
        return df
    import ipywidgets as w

    options = lambda column: ["all", *sorted(df[column].dropna().astype(str).unique())]  # noqa: E731
    model, condition = w.Dropdown(options=options("model"), description="model"), w.Dropdown(
        options=options("condition"), value="reflection" if "reflection" in set(df["condition"]) else "all",
        description="condition")
    verdict = w.Dropdown(options=["all", "pass", "fail"], description="retry")
    page = w.BoundedIntText(value=0, min=0, description="episode")
    shown, count = w.HTML(), w.Label()

    def selected() -> pd.DataFrame:
        rows = df
        if model.value != "all":
            rows = rows[rows["model"] == model.value]
        if condition.value != "all":
            rows = rows[rows["condition"] == condition.value]
        if verdict.value != "all":
            rows = rows[rows["ok"] == (verdict.value == "pass")]
        return rows

    def refresh(*_):
        rows = selected()
        page.max = max(len(rows) - 1, 0)
        count.value = f"of {len(rows)}"
        shown.value = _episode_html(rows.iloc[min(page.value, page.max)]) if len(rows) else "<i>no episode matches</i>"

    def refilter(*_):
        page.value = 0  # a new selection starts at its first episode
        refresh()

    for control in (model, condition, verdict):
        control.observe(refilter, names="value")
    page.observe(refresh, names="value")
    refresh()
    return w.VBox([w.HBox([model, condition, verdict]), w.HBox([page, count]), shown])
