"""The sweep summary: Wilson intervals, a planted failure rule recovered, and the report of real runs."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from nanbench.summary import analysis as A
from nanbench.summary.attribution import attribution
from tools import synthetic
from nanbench.tracking.reader import csv_floats, load_runs
from nanbench.summary import summarize
from nanbench.summary.cli import main

# ---------------------------------------------------------------------------------------------
# Rates and Wilson intervals


@pytest.mark.parametrize("k, n, low, high", [
    # by hand, z = 1.959964: center = (p + z²/2n)/(1 + z²/n), half = z/(1 + z²/n)·sqrt(p(1-p)/n + z²/4n²)
    (0, 10, 0.0, 0.277533),
    (5, 10, 0.236593, 0.763407),
    (10, 10, 0.722467, 1.0),
    (1, 3, 0.061492, 0.792340),
])
def test_wilson_interval_known_counts(k, n, low, high):
    lo, hi = A.wilson_interval(k, n)
    assert float(lo) == pytest.approx(low, abs=1e-6)
    assert float(hi) == pytest.approx(high, abs=1e-6)


def test_wilson_interval_matches_scipy_and_keeps_nan_for_no_runs():
    from scipy.stats import binomtest
    k = np.array([0, 1, 7, 46, 48, 3])
    n = np.array([1, 2, 20, 48, 48, 1000])
    lo, hi = A.wilson_interval(k, n)
    for i in range(len(k)):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(confidence_level=0.95, method="wilson")
        assert (lo[i], hi[i]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    lo, hi = A.wilson_interval(0, 0)
    assert math.isnan(float(lo)) and math.isnan(float(hi))


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """A minimal runs frame: (optimizer.name, optimizer.lr, outcome, first_inf_step, first_nan_step)."""
    df = pd.DataFrame(rows, columns=["optimizer.name", A.LR, "outcome", "first_inf_step", "first_nan_step"])
    df["optimizer.name"] = pd.Categorical(df["optimizer.name"], categories=["sgd", "adam"], ordered=True)
    df["first_nonfinite_source"] = np.where(df["outcome"].isin(A.NONFINITE), "loss", "none")
    return df


def test_rate_table_counts_errors_apart_and_keeps_nan_rates():
    runs = _frame([("sgd", 0.1, "nan", 3, 4), ("sgd", 0.1, "inf", 2, np.nan), ("sgd", 0.1, "converged", np.nan, np.nan),
                   ("sgd", 0.1, "error", np.nan, np.nan), ("adam", 0.1, "error", np.nan, np.nan),
                   ("sgd", 0.01, "diverged", np.nan, np.nan), ("sgd", 0.01, "nan", np.nan, 5)])
    t = A.rate_table(runs, "optimizer.name")
    sgd, adam = t.loc["sgd"], t.loc["adam"]
    assert (sgd["runs"], sgd["nan"], sgd["inf"], sgd["diverged"], sgd["error"]) == (6, 2, 1, 1, 1)
    assert sgd["rate"] == pytest.approx(3 / 5)  # over the 5 runs that trained
    assert sgd["inf_before_nan"] == 1
    assert math.isnan(adam["rate"]) and math.isnan(adam["ci_low"])  # no trained run: NaN, not 0


def test_stability_finds_lr_boundaries_and_non_monotone_configurations():
    runs = _frame([("sgd", 0.001, "converged", np.nan, np.nan), ("sgd", 0.01, "converged", np.nan, np.nan),
                   ("sgd", 0.1, "nan", np.nan, 3), ("sgd", 1.0, "nan", np.nan, 1),
                   ("adam", 0.001, "nan", np.nan, 9), ("adam", 0.01, "converged", np.nan, np.nan),
                   ("adam", 0.1, "error", np.nan, np.nan)])
    t = A.stability(runs, ["optimizer.name", A.LR]).set_index("optimizer.name")
    assert t.loc["sgd", "lr_max_stable"] == 0.01 and t.loc["sgd", "lr_min_unstable"] == 0.1
    assert t.loc["sgd", "monotone"]
    assert t.loc["adam", "lr_max_stable"] == 0.01 and t.loc["adam", "lr_min_unstable"] == 0.001
    assert not t.loc["adam", "monotone"]


def test_steps_csv_values_parse_with_nan_inf_and_numpy_reprs():
    values = pd.Series(["1.5", "np.float32(2.5)", "np.float64(inf)", "nan", "np.float32(nan)"], dtype=object)
    out = csv_floats(values).to_numpy()
    assert out[0] == 1.5 and out[1] == 2.5 and np.isposinf(out[2])
    assert np.isnan(out[3]) and np.isnan(out[4])


# ---------------------------------------------------------------------------------------------
# A planted rule: only sgd AND scaler=none AND lr >= 0.1 turns NaN


@pytest.fixture(scope="module")
def module_store(tmp_path_factory) -> str:
    """One SQLite store for the module's experiments (creating a store costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('summary') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def planted(module_store):
    parent = synthetic.plant_sweep(module_store, "planted", synthetic.PLANTED_GRID)
    return module_store, parent


def test_planted_rule_is_recovered_with_its_three_factors_ranked_first(planted):
    uri, parent = planted
    sweep = load_runs("planted", uri)
    assert sweep.parent_run_id == parent
    runs = sweep.runs
    assert len(runs) == 2 * 2 * 3 * 4 * 2 * 2
    expected_nan = (runs["optimizer.name"].eq("sgd") & runs["preprocess.scaler"].eq("none")
                    & (runs[A.LR] >= 0.1))
    assert (runs["outcome"].eq("nan") == expected_nan).all()
    varying, constant = A.split_factors(runs, sweep.factors)
    assert set(varying) == set(synthetic.PLANTED_GRID)
    att = attribution(runs, varying)
    assert all(r.predicts_nonfinite for r in att.rules)  # leaves predicting finite are no rules
    nonfinite_rules = [r for r in att.rules if r.predicts_nonfinite]
    assert len(nonfinite_rules) == 1
    rule = nonfinite_rules[0]
    assert {(c.factor, c.op, c.value) for c in rule.conditions} == {
        ("optimizer.name", "=", "sgd"), ("preprocess.scaler", "=", "none"), (A.LR, ">=", 0.1)}
    assert (rule.nonfinite, rule.runs) == (int(expected_nan.sum()), int(expected_nan.sum()))
    assert "optimizer.lr >= 0.1" in rule.text and "→ non-finite 16/16" in rule.text
    assert set(att.importance["factor"][:3]) == {"optimizer.name", "preprocess.scaler", A.LR}


def test_sql_fast_path_and_mlflow_api_path_read_the_same_runs(planted):
    uri, parent = planted
    fast = load_runs("planted", uri, parent).runs.set_index("run_id").sort_index()
    api = load_runs("planted", uri, parent, fast=False).runs.set_index("run_id").sort_index()
    columns = [c for c in fast.columns if c != "start_time"]
    pd.testing.assert_frame_equal(fast[columns], api[columns], check_dtype=False, check_categorical=False)


def test_cli_summary_of_planted_runs_states_the_rule_and_tabulates_only_varying_factors(planted, tmp_path, capsys):
    uri, _ = planted
    out = tmp_path / "cli"
    assert main(["--sweep", "planted", "--tracking-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "192 runs, 16 non-finite" in printed
    assert "optimizer.lr >= 0.1" in printed and "→ non-finite 16/16" in printed
    # the findings state the planted rule as a group, with the remedy on each of its three factors
    assert "every one of the 16 non-finite runs had preprocess.scaler = none and optimizer.name = sgd and " \
           "optimizer.lr ≥ 0.1: 16/16" in printed
    assert "optimizer.lr ≤ 0.01 instead kept every run finite: 0/16" in printed
    md = (out / "summary.md").read_text()
    for section in ("1. Main effects", "2. Interactions", "3. Attribution", "4. Where non-finite",
                    "5. Stability", "6. Speed", "7. Representative runs", "Optuna"):
        assert section in md
    # the tabulated factors are the varying ones; constant factors are listed once in the header
    assert "`train.epochs=5`" in md and "| train.epochs |" not in md
    assert "| optimizer.lr \\ optimizer.name | sgd | momentum | adam |" in md
    stability = pd.read_csv(out / "stability.csv")
    sgd_none = stability[(stability["optimizer.name"] == "sgd") & (stability["preprocess.scaler"] == "none")]
    assert (sgd_none["lr_max_stable"] == 0.01).all() and (sgd_none["lr_min_unstable"] == 0.1).all()
    assert stability.loc[stability["optimizer.name"] == "adam", "lr_min_unstable"].isna().all()

    assert main(["--sweep", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "x")]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_experiment_scope_joins_invocations_with_the_latest_run_per_configuration(module_store, tmp_path):
    specs = synthetic.grid_specs({"optimizer.name": ["sgd", "adam"], A.LR: [0.01, 1.0]})
    first = synthetic.create_parent(module_store, "resumed")
    synthetic.plant([synthetic.synthetic_result(s, lambda s: False) for s in specs], module_store, "resumed",
                    parent_run_id=first)
    second = synthetic.create_parent(module_store, "resumed")  # re-runs two configurations: now NaN
    synthetic.plant([synthetic.synthetic_result(s, lambda s: True) for s in specs[:2]], module_store, "resumed",
                    parent_run_id=second)
    latest = load_runs("resumed", module_store)
    assert latest.parent_run_id == second and len(latest.runs) == 2 and latest.other_runs == 4
    whole = load_runs("resumed", module_store, scope="experiment")
    assert whole.parent_run_id == second and len(whole.runs) == 4
    outcome = whole.runs.set_index("config_hash")["outcome"]
    assert outcome[[s.config_hash() for s in specs[:2]]].eq("nan").all()
    assert outcome[[s.config_hash() for s in specs[2:]]].ne("nan").all()
    # a third invocation finds everything finished: its parent has no child, the summary covers all
    third = synthetic.create_parent(module_store, "resumed")
    info = summarize("resumed", module_store, tmp_path / "resumed", log_artifacts=False)
    assert info["parent_run_id"] == third and info["runs"] == 4 and info["nonfinite"] == 2


# ---------------------------------------------------------------------------------------------
# A report from real training runs


@pytest.fixture(scope="module")
def trained(module_store):
    """8 real runs (clean data, SGD, 3 epochs) under a parent run: lr 0.01 and 0.1 stay finite,
    10 and 100 overflow; with and without standard scaling."""
    from mlflow.tracking import MlflowClient

    from nanbench.run import execute
    from nanbench.spec import from_config
    from nanbench.tracking import Tracker

    uri = module_store
    base = from_config({"dataset": {"name": "clean", "n_samples": 256, "n_features": 10, "noise": 0.1, "seed": 0},
                        "optimizer": {"name": "sgd", "lr": 0.01}, "train": {"epochs": 3},
                        "tracking": {"uri": uri}})
    tracker = Tracker(base.tracking)
    exp_id = tracker.experiment_id("real")
    client = MlflowClient(uri)
    parent = client.create_run(exp_id, run_name="sweep real",
                               tags={"nanbench.role": "parent", "sweep": "real"}).info.run_id
    outcomes = {}
    for scaler in ("none", "standard"):
        for lr in (0.01, 0.1, 10.0, 100.0):
            spec = base.replace(preprocess={"scaler": scaler}, optimizer={"lr": lr})
            result = execute(spec)
            outcomes[(scaler, lr)] = result.outcome
            tracker.log(result, experiment="real", parent_run_id=parent,
                        tags={"sweep": "real", "nanbench.role": "child"})
    return uri, parent, outcomes


def test_report_of_real_runs_is_self_contained_and_attached_to_the_parent(trained, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, parent, outcomes = trained
    assert any(o in A.NONFINITE for o in outcomes.values())
    assert any(o not in A.NONFINITE for o in outcomes.values())
    out = tmp_path / "real"
    info = summarize("real", uri, out)
    assert info["parent_run_id"] == parent and info["runs"] == 8 and info["logged_to_parent"]
    for name in ("summary.md", "summary.html", "runs.csv", "main_effects.csv", "heatmap_nonfinite.png",
                 "speed.png", "main_effects.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    pngs = sorted(p.name for p in out.glob("*.png"))
    md = (out / "summary.md").read_text()
    for png in pngs:
        assert f"]({png})" in md
    html = (out / "summary.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert "<link" not in html and "<script" not in html

    # outcome "nan" is a value: read it as text, and only empty cells as missing
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False, na_values=[""])
    assert len(runs) == 8 and set(runs["outcome"]) == set(outcomes.values())
    for column in ("run_id", "run_name", "dataset.name", "preprocess.scaler", "optimizer.lr", "outcome",
                   "first_nonfinite_step", "first_nonfinite_source", "first_inf_step", "first_nan_step",
                   "initial_loss", "final_loss", "steps_per_s", "samples_per_s", "first_step_s", "wall_s"):
        assert column in runs.columns, column
    finite = ~runs["outcome"].isin(A.NONFINITE)
    assert runs.loc[finite, "first_nonfinite_step"].isna().all()  # absent, not 0
    assert runs.loc[~finite, "first_nonfinite_step"].notna().all()

    attached = {a.path for a in MlflowClient(uri).list_artifacts(parent, "summary")}
    assert {"summary/summary.md", "summary/summary.html", "summary/runs.csv"} <= attached


def test_software_line_counts_the_runs_of_the_summary_after_the_latest_per_configuration(module_store, tmp_path):
    from mlflow.tracking import MlflowClient

    specs = synthetic.grid_specs({"optimizer.name": ["sgd", "adam"], A.LR: [0.01, 1.0]})
    first = synthetic.create_parent(module_store, "software")
    old = synthetic.plant([synthetic.synthetic_result(s, lambda s: False) for s in specs], module_store,
                          "software", parent_run_id=first)
    client = MlflowClient(module_store)
    for run_id in old:  # the first invocation ran on an older commit
        client.set_tag(run_id, "git_commit", "0ld")
    second = synthetic.create_parent(module_store, "software")
    synthetic.plant([synthetic.synthetic_result(s, lambda s: False) for s in specs[:2]], module_store,
                    "software", parent_run_id=second)
    whole = load_runs("software", module_store, scope="experiment")
    commits = whole.software["git_commit"]
    assert len(whole.runs) == 4 and sum(commits.values()) == 4  # not 4 + 2 runs of the experiment
    assert commits["0ld"] == 2
    out = tmp_path / "software"
    summarize("software", module_store, out, scope="experiment", log_artifacts=False)
    md = (out / "summary.md").read_text()
    line = next(x for x in md.splitlines()
                if x.startswith("Software and machine, counted over the 4 runs of this summary: "))
    assert "`0ld` (2 runs)" in line and len(re.findall(r"` \(2 runs\)", line)) == 2  # two commits, 2 runs each
    from nanbench.result import this_machine
    assert f"machine `{this_machine()}`" in line  # the CPU the runs trained on, named
    assert "cores)" in this_machine()
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False, na_values=[""])
    assert (runs["git_commit"] == "0ld").sum() == 2


def test_summary_of_a_mixed_table_opens_with_findings_and_sets_the_explained_runs_aside(tmp_path):
    from nanbench.tracking.reader import RunTable
    from nanbench.summary import build_report

    runs, factors = synthetic.mixed_table(commits=("a1", "b2"))
    software = {"git_commit": runs["git_commit"].value_counts().to_dict()}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # no run of the table is in it: curves are not found
    sweep = RunTable("mixed", "0", uri, None, None, runs, factors, software=software)
    _, info = build_report(sweep, tmp_path)
    assert info["runs"] == 600 and info["explained"] == 200 and info["nonfinite"] == 252
    md = (tmp_path / "summary.md").read_text()
    html = (tmp_path / "summary.html").read_text()
    # findings first, each linking to a table that exists in both renderings
    assert md.index("## At a glance") < md.index("## Findings") < md.index("## Outcomes") < md.index("## 1. Main effects")
    glance = md[md.index("## At a glance"):md.index("## Findings")]
    assert "(overview.png)" in glance and (tmp_path / "overview.png").exists()
    assert glance.count(". ") + 1 <= 6 and "600 runs: 252 turned non-finite" in glance
    findings = md[md.index("## Findings"):md.index("## Outcomes")]
    assert "1. Of the 600 runs" in findings and "`dataset.name` = nan_inputs" in findings
    assert "`optimizer.name` = sgd and `clipping.kind` = none" in findings
    for anchor in set(re.findall(r"\]\(#([\w-]+)\)", findings)):
        assert f'<a id="{anchor}"></a>' in md and f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    # the sections are about the 400 runs not explained by their inputs, the pooled view is labelled
    effects = pd.read_csv(tmp_path / "main_effects.csv", keep_default_na=False, na_values=[""])
    assert effects.loc[effects["factor"] == "dataset.name", "level"].tolist() == ["clean", "outliers"]
    lr = effects[effects["factor"] == A.LR]
    assert lr["nonfinite"].tolist() == [2, 6, 10, 14, 20] and lr["ran"].tolist() == [80] * 5
    pooled = pd.read_csv(tmp_path / "main_effects_pooled.csv", keep_default_na=False, na_values=[""])
    assert pooled.loc[pooled["factor"] == A.LR, "nonfinite"].tolist() == [42, 46, 50, 54, 60]
    assert "## 8. Pooled view: every run, the explained ones included" in md
    # dataset descriptors are attributes of the dataset level, never factors
    for descriptor in ("dataset.n_samples", "dataset.nan_fraction", "dataset.outlier_fraction"):
        assert descriptor not in set(effects["factor"]) | set(pooled["factor"]) | set(info["importance"])
        assert not any(descriptor in rule for rule in info["rules"])
    assert "≡" not in md
    assert "| dataset.name | n_samples | outlier_fraction | nan_fraction |" in md
    # rules are leaves that predict non-finite
    assert info["rules"] and all("→ non-finite" in r for r in info["rules"])
    for rule in re.findall(r"→ non-finite (\d+)/(\d+)", md):
        assert int(rule[0]) * 2 > int(rule[1])
    assert "git_commit `a1` (300 runs), `b2` (300 runs)" in md
    assert "improving" in md  # the outcome table knows the new outcome


def test_summary_of_a_sweep_that_does_not_exist_is_one_line_and_writes_no_folder(planted, tmp_path, capsys):
    uri, _ = planted
    out = tmp_path / "results" / "nonexistent"
    assert main(["--sweep", "nonexistent", "--tracking-uri", uri, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nanbench.summary: error:") and "nonexistent" in err[0]
    assert not out.exists() and not out.parent.exists()


def test_summary_on_a_full_disk_is_one_line_and_leaves_the_previous_summary_whole(planted, tmp_path, capsys):
    """Files larger than 64 KB cannot be written (RLIMIT_FSIZE: what a full disk does to a write,
    without needing root to mount one): one line, exit 1, the summary there before untouched and
    nothing half-written beside it."""
    import resource
    import signal
    uri, _ = planted
    out = tmp_path / "results" / "planted"
    out.mkdir(parents=True)
    (out / "summary.md").write_text("the previous summary\n")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    try:
        code = main(["--sweep", "planted", "--tracking-uri", uri, "--out", str(out)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("nanbench.summary: error: could not write"), err
    assert str(out) in err[0] and "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in out.parent.iterdir()) == ["planted"]  # no staging folder left
    assert [p.name for p in out.iterdir()] == ["summary.md"]
    assert (out / "summary.md").read_text() == "the previous summary\n"


def test_a_sweep_name_that_would_leave_results_needs_an_out_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--sweep", "../escape", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sweep must be a name of letters" in err[0] and "--out" in err[0]
    assert list(tmp_path.iterdir()) == []
