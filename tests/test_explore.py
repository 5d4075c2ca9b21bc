"""The transcript explorer on a real run folder (the committed cpu-demo run): every answer it gives is
checked against the numbers the evaluation stage computed independently (metrics.json)."""

import html
import json
from pathlib import Path

import pytest

from r3kit.report import explore
from r3kit.tasks import get_task

RUN = Path(__file__).resolve().parents[1] / "results" / "cpu-demo"


class _Metrics(dict):
    """The committed run's metrics.json, read when a test first needs it (a clear failure if it is missing)."""

    def _load(self):
        if not self:
            self.update(json.loads((RUN / "metrics.json").read_text()))
        return self

    def __getitem__(self, key):
        return dict.__getitem__(self._load(), key)

    def __iter__(self):
        return dict.__iter__(self._load())

    def items(self):
        return dict.items(self._load())


METRICS = _Metrics()


@pytest.fixture(scope="module")
def df():
    return explore.episodes(RUN)


def test_episodes_hold_every_evaluated_model_and_agree_with_the_metrics(df):
    assert set(df["model"]) == set(METRICS)
    for model, entry in METRICS.items():
        rows = df[df["model"] == model]
        assert rows["index"].nunique() == entry["first_try"]["n"]
        for measure in ("first_try", "second_try"):
            assert explore.outcomes(df, measure)[model].sum() == entry[measure]["successes"]
        # one row per condition for each failed first attempt, one row for each solved one
        own = rows[rows["condition"] == "reflection"]
        assert len(own) == entry["failed_first_attempts"] and not own["first_ok"].any()
        assert own["reflection"].map(lambda r: isinstance(r, str)).all() and own["retry"].str.len().gt(0).all()
        assert (rows[rows["condition"] == "no_reflection"]["reflection"].isna()).all()
    first = df[(df["model"] == "vanilla") & (df["index"] == 0)].iloc[0]
    assert first["problem"] == "37 49 5 = 60" and first["difficulty"] == "3 numbers"


def test_fixed_and_broken_match_the_paired_counts(df):
    for model in (m for m in METRICS if m != "vanilla"):
        changed = explore.fixed_and_broken(df, model)
        pair = METRICS[model]["paired_vs_vanilla"]["second_try"]
        assert (changed["change"] == "fixed").sum() == pair["gained"]
        assert (changed["change"] == "broken").sum() == pair["lost"]
        assert {"problem", "vanilla: attempt", f"{model}: attempt", f"{model}: reflection"} <= set(changed.columns)
    first = explore.fixed_and_broken(df, "trained", measure="first_try")
    pair = METRICS["trained"]["paired_vs_vanilla"]["first_try"]
    assert ((first["change"] == "fixed").sum(), (first["change"] == "broken").sum()) == (pair["gained"], pair["lost"])


def test_reflections_by_outcome_match_the_own_failure_counts(df):
    for model in METRICS:
        own = METRICS[model]["own_failures"]["reflection"]
        reflections = explore.reflections_by_outcome(df, model)
        assert len(reflections) == own["n"] and (reflections["led_to"] == "pass").sum() == own["successes"]
        assert list(reflections["led_to"].unique()) == ["pass", "fail"][: reflections["led_to"].nunique()]
    on_vanilla = explore.reflections_by_outcome(df, "trained", condition="on_vanilla_attempt")
    fixed = METRICS["trained"]["on_vanilla_failures"]["model"]
    assert (len(on_vanilla), (on_vanilla["led_to"] == "pass").sum()) == (fixed["n"], fixed["successes"])


def test_failure_reasons_count_every_failed_attempt_by_kind(df):
    reasons = explore.failure_reasons(df, get_task("countdown", style="compact"))
    for model, entry in METRICS.items():
        assert reasons[model].sum() == entry["first_try"]["n"] - entry["first_try"]["successes"]
    assert "value N is not the target N" in reasons.index  # numbers masked: one kind, not one row per target
    retries = explore.failure_reasons(df, turn="retry")
    for model, entry in METRICS.items():
        own = entry["own_failures"]["reflection"]
        assert retries[model].sum() == own["n"] - own["successes"]


def test_side_by_side_shows_one_problem_across_every_model(df):
    table = explore.side_by_side(df, 0)
    assert list(table.index) == list(dict.fromkeys(df["model"])) and table["problem"].nunique() == 1


def test_browse_filters_and_pages_and_falls_back_to_the_table(df):
    assert explore.browse(df, widgets=False) is df
    view = explore.browse(df, widgets=True)
    (model, _, verdict), (page, count), shown = view.children[0].children, view.children[1].children, view.children[2]
    model.value, verdict.value = "trained", "pass"
    assert count.value == f"of {METRICS['trained']['own_failures']['reflection']['successes']}" and "✅" in shown.value
    passes = df[(df["model"] == "trained") & (df["condition"] == "reflection") & (df["ok"] == True)]  # noqa: E712
    page.value = 3
    assert f"problem {passes.iloc[3]['index']} " in shown.value and html.escape(passes.iloc[3]["reflection"]) in shown.value
    assert page.value == 3
    verdict.value = "fail"  # a new filter starts at its first episode, whose retry failed
    assert page.value == 0 and shown.value.split("<b>retry")[1].split("</b>")[0].endswith("❌")
    assert "no &lt;answer&gt; tag" in explore._episode_html(df[df["reason"] == "no <answer> tag"].iloc[0]) or \
        not (df["reason"] == "no <answer> tag").any()


def test_bad_input_names_the_problem(tmp_path, df):
    with pytest.raises(ValueError, match="no evaluation transcripts under"):
        explore.episodes(tmp_path)
    with pytest.raises(ValueError, match="no transcripts of 'nonesuch'"):
        explore.fixed_and_broken(df, "nonesuch")
    with pytest.raises(ValueError, match="measure must be"):
        explore.outcomes(df, "third_try")
    with pytest.raises(ValueError, match="no problem with index 99999"):
        explore.side_by_side(df, 99999)


def test_function_calling_reasons_group_by_kind_not_by_tool():
    task = get_task("function_calling")
    assert task.reason_category("wrong arguments for get_weather (missing unit; wrong value city)") == \
        "wrong argument value"
    assert task.reason_category("wrong arguments for get_weather (missing unit)") == "missing argument"
    assert task.reason_category("wrong arguments for f, g (unexpected x)") == "extra argument"
    assert task.reason_category("missing call(s) a, b; unexpected call(s) c") == "missing call"
    assert task.reason_category("missing call(s) a; unexpected call(s) c") == "wrong tool"
    assert task.reason_category("unexpected call(s) c, c") == "extra call"
    assert task.reason_category("malformed JSON (Expecting value at position 17)") == "malformed"
    assert task.reason_category("correct") == "correct"
    assert get_task("countdown").failure_categories == ()


def test_models_evaluated_on_different_problems_compare_on_the_shared_ones():
    """A model missing problems (or evaluated without the reflection condition) never breaks the comparison."""
    import pandas as pd

    def row(model, index, first_ok, condition=None, ok=None, reason="x"):
        return {"model": model, "index": index, "difficulty": "d", "problem": f"p{index}", "attempt": "a",
                "first_ok": first_ok, "first_reason": "correct" if first_ok else "value 3 is not the target 4",
                "condition": condition, "reflection": "r" if condition == "reflection" else None, "retry": "t",
                "ok": ok, "reason": reason}

    df = pd.DataFrame([row("vanilla", 0, True), row("vanilla", 1, False, "reflection", False),
                       row("vanilla", 2, False, "reflection", True, "correct"),
                       row("trained", 1, False, "reflection", True, "correct"),
                       row("trained", 2, False, "no_reflection", False)], columns=explore.COLUMNS)
    changed = explore.fixed_and_broken(df, "trained")  # 0: trained never saw it; 2: its second try is unknown
    assert changed.set_index("index")["change"].to_dict() == {1: "fixed"}
    first = explore.fixed_and_broken(df, "trained", measure="first_try")  # problem 2's first attempt is known
    assert first.empty and explore.outcomes(df, "first_try").loc[2].tolist() == [False, False]
    reasons = explore.failure_reasons(df)
    assert list(reasons.columns) == ["vanilla", "trained"] and reasons.loc["value N is not the target N"].tolist() == [2, 2]
    assert explore.failure_reasons(df, turn="retry").sum().tolist() == [1, 0]  # trained failed no own retry: a 0
