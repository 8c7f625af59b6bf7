"""nanbench.studies.examples, nanbench.studies.claims and nanbench.studies.examples.report.

The example definitions are compared with the documents' own code (parsed from the Markdown
beside the repository, ../shared/seeds); the table is generated from real, shortened runs into a
temporary MLflow store.
"""

from __future__ import annotations

import ast
import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest

from nanbench.studies import examples
from nanbench.studies.examples import report as examples_report
from nanbench.studies.examples import ALL, CODE, EXAMPLES, Row, make_data
from nanbench.forensics import NAN_BIT, StepSeries, classify
from nanbench.vocab import OUTCOMES
from nanbench.result import RunResult
from nanbench.spec import OutcomeSpec

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT.parent / "shared" / "seeds"
DOCS = {"doc000": "doc000-*.md", "doc003": "doc003-*.md"}


def document_blocks(doc: str) -> list[str]:
    """The python code blocks of a document, in order (example i is block i)."""
    if not SEEDS.is_dir():
        pytest.skip(f"the documents are not beside the repository ({SEEDS} is absent)")
    path = next(SEEDS.glob(DOCS[doc]), None)
    if path is None:
        pytest.skip(f"no {DOCS[doc]} in {SEEDS}")
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def describe(code: str) -> dict:
    """What a code block passes to Keras: Dense layers, optimizer, loss, fit's arrays and epochs;
    and the namespace of the statements that build the data (everything before `model = ...`)."""
    tree = ast.parse(code)
    optimizers = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
            name = _dotted(stmt.value.func)
            if ".optimizers." in name:
                optimizers[stmt.targets[0].id] = (name.rsplit(".", 1)[-1], {
                    k.arg: ast.literal_eval(k.value) for k in stmt.value.keywords})
    data_statements = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "model" for t in stmt.targets):
            break
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
            data_statements.append(stmt)
    out = {"layers": [], "optimizer": None, "loss": None, "epochs": None, "fit_args": None}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        if name.endswith("layers.Dense"):
            out["layers"].append({"units": ast.literal_eval(node.args[0]),
                                  **{k: ast.literal_eval(v) for k, v in kwargs.items()}})
        elif name == "model.compile":
            opt = kwargs["optimizer"]
            out["optimizer"] = ast.literal_eval(opt) if isinstance(opt, ast.Constant) else optimizers[opt.id]
            out["loss"] = ast.literal_eval(kwargs["loss"])
        elif name == "model.fit":
            out["fit_args"] = [a.id for a in node.args]
            out["epochs"] = ast.literal_eval(kwargs["epochs"])
    namespace = {"np": np}
    from sklearn.preprocessing import StandardScaler
    namespace["StandardScaler"] = StandardScaler
    exec(compile(ast.Module(body=data_statements, type_ignores=[]), "<data>", "exec"), namespace)  # noqa: S102
    out["namespace"] = namespace
    return out


# --- the definitions against the documents -------------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_code_is_the_documents_code_verbatim(example):
    blocks = document_blocks(example.doc)
    assert len(blocks) == 3
    assert CODE[(example.doc, example.number)].rstrip() == blocks[example.number - 1].rstrip()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_definition_reproduces_the_documents_arrays_layers_and_arguments(example):
    doc = describe(document_blocks(example.doc)[example.number - 1])
    assert list(example.layers) == doc["layers"]
    assert example.optimizer == doc["optimizer"]
    assert example.epochs == doc["epochs"]
    if example.loss != doc["loss"]:  # a change, and then it must be listed
        assert any(f"loss='{doc['loss']}' -> loss='{example.loss}'" in c for c in example.changes)
    X, y = make_data(example.data)
    names = doc["fit_args"]
    if all(n in doc["namespace"] for n in names):
        assert not example.names
        for mine, theirs in zip((X, y), (doc["namespace"][n] for n in names)):
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
            assert np.array_equal(mine, theirs)
    else:  # the document never defines them: synthesized, with the stated feature count, and said so
        assert tuple(names) == example.names == ("X_train", "y_train")
        assert all(n not in doc["namespace"] for n in names)
        assert X.shape[1] == doc["layers"][0]["input_shape"][0]
        assert any("never defined in the document" in c for c in example.changes)


@pytest.mark.parametrize("example", ALL, ids=lambda e: e.key)
def test_spec_describes_the_run(example):
    """The MLflow params (the RunSpec) say what the run does: same data through nanbench.data,
    same layers, optimizer, clipping, loss and epochs."""
    from nanbench.data import load
    X, y = make_data(example.data)
    data = load(example.spec.dataset, example.spec.preprocess)
    np.testing.assert_allclose(data.X, np.asarray(X, dtype=np.float32), rtol=1e-6)
    np.testing.assert_allclose(data.y, np.asarray(y, dtype=np.float32).reshape(-1, 1), rtol=1e-6)
    s = example.spec
    hidden = example.layers[:-1]
    assert s.model.name == ("mlp" if hidden else "linear")
    if hidden:
        assert (s.model.width, s.model.depth, s.model.activation) == (hidden[0]["units"], 1, hidden[0]["activation"])
    name, kwargs = (example.optimizer, {}) if isinstance(example.optimizer, str) else example.optimizer
    assert s.optimizer.name == name.lower()
    assert s.optimizer.lr == kwargs.get("learning_rate", {"adam": 1e-3, "sgd": 0.01}[name.lower()])
    assert (s.clipping.kind == "clipnorm") == ("clipnorm" in kwargs)
    assert s.loss.name == {"mse": "mse", "huber": "huber"}[example.loss]
    assert (s.train.epochs, s.train.batch_size, s.train.shuffle, s.train.engine) == (example.epochs, 32, True, "fit")


def test_variants_name_their_base_partner_and_changes():
    keys = {e.key for e in ALL}
    for e in ALL:
        if e.judge == "remedy":
            assert e.partner in keys
        if e.base is not None:
            assert e.base in keys and e.code is None and len(e.changes) > len(examples.BY_KEY[e.base].changes)
    assert {e.key for e in EXAMPLES} == {f"doc00{d}-ex{n}" for d in (0, 3) for n in (1, 2, 3)}


def test_epochs_cap_is_a_listed_change():
    ex = examples.BY_KEY["doc003-ex1"]
    assert examples.capped(ex, 3) == (3, ("epochs=100 capped at 3 (--epochs-cap)",))
    assert examples.capped(ex, None) == (100, ())
    assert examples.capped(ex, 500) == (100, ())


# --- verdicts from runs ----------------------------------------------------------------------------

def _row(key: str, losses, nan_from: int | None = None, *, seeds: list[str] | None = None,
         dead: float | None = None) -> Row:
    """A row whose seed-0 run has these step losses (NaN from `nan_from`), and whose other seeds
    ended with the given outcomes (each with dead_fraction `dead`)."""
    ex = examples.BY_KEY[key]
    loss = np.array(losses, dtype=np.float64)
    flags = np.zeros(len(loss), dtype=np.int64)
    if nan_from is not None:
        loss[nan_from:] = np.nan
        flags[nan_from:] = NAN_BIT["loss"]
    series = StepSeries(loss=loss, grad_norm=np.ones_like(loss), weight_norm=np.ones_like(loss), flags=flags,
                        epoch_loss=loss, steps_per_epoch=1, initial_loss=float(losses[0]), final_loss=float(loss[-1]))
    v = classify(series, OutcomeSpec())
    result = RunResult(spec=ex.spec, outcome=v.outcome, verdict=v, series=series, dead_fraction=dead)
    runs = [examples.SeedRun.of(0, result)]
    runs += [examples.SeedRun(seed=i + 1, outcome=o, final_loss=None if o in ("nan", "inf") else 1.0,
                              dead_fraction=dead) for i, o in enumerate(seeds or [])]
    return Row(example=ex, result=result, as_written=None, warnings=[], losses=list(loss), changes=ex.changes,
               seeds=runs)


FINITE, NAN = [10.0, 9.0, 8.0], [10.0, 1e30, 1.0]


def test_verdicts_follow_the_runs_over_seeds():
    rows = {"doc000-ex1": _row("doc000-ex1", FINITE, seeds=["stalled"] * 4),
            "doc000-ex2": _row("doc000-ex2", FINITE, seeds=["stalled"] * 4)}
    assert examples.judge(rows["doc000-ex1"], rows)[0] == "refuted"          # claimed NaN, finite at every seed
    assert examples.judge(rows["doc000-ex2"], rows)[0] == "not testable"     # nothing to prevent
    rows["doc000-ex1/sgd"] = _row("doc000-ex1/sgd", NAN, nan_from=2, seeds=["nan"] * 4)
    rows["doc000-ex2/sgd"] = _row("doc000-ex2/sgd", FINITE, seeds=["improving"] * 4)
    assert examples.judge(rows["doc000-ex1/sgd"], rows)[0] == "supported"
    verdict, evidence = examples.judge(rows["doc000-ex2/sgd"], rows)
    assert verdict == "supported" and "nan from step 2" in evidence
    assert "with the remedy 0/5 and without it 5/5: difference -1.00" in evidence
    # the remedy's runs go NaN too: a tie, no effect (it was "refuted" with one seed)
    rows["doc000-ex2/sgd"] = _row("doc000-ex2/sgd", NAN, nan_from=1, seeds=["nan"] * 4)
    assert examples.judge(rows["doc000-ex2/sgd"], rows)[0] == "no effect"
    # the remedy turns NaN where its partner stays finite at every seed: a significant reversal
    rows["doc000-ex1/sgd"] = _row("doc000-ex1/sgd", FINITE, seeds=["stalled"] * 4)
    assert examples.judge(rows["doc000-ex2/sgd"], rows)[0] == "refuted"
    rows["doc000-ex3"] = _row("doc000-ex3", [1.0, 5.0, 20.0], seeds=["diverged"] * 4)   # finite but diverged
    assert examples.judge(rows["doc000-ex3"], rows)[0] == "refuted"
    rows["doc003-ex1/raw"] = _row("doc003-ex1/raw", FINITE)
    assert examples.judge(rows["doc003-ex1/raw"], rows)[0] == "control"


def test_a_claimed_nan_at_some_seeds_only_is_supported_under_conditions():
    rows = {"doc000-ex1": _row("doc000-ex1", NAN, nan_from=1, seeds=["nan", "stalled", "stalled", "nan"])}
    verdict, evidence = examples.judge(rows["doc000-ex1"], rows)
    assert verdict == "supported under conditions"
    assert "non-finite in 3 of 5 seeds (0, 1, 4)" in evidence


def test_a_dead_control_is_flagged_not_counted_as_a_finite_control():
    """doc003 ex1's SGD variant was "refuted" because its raw-X control stayed finite: every ReLU
    unit of that control is dead (a constant prediction). Its finite loss is no baseline."""
    rows = {"doc003-ex1/sgd-raw": _row("doc003-ex1/sgd-raw", FINITE, seeds=["improving", "diverged", "stalled",
                                                                              "improving"], dead=1.0),
            "doc003-ex1/sgd": _row("doc003-ex1/sgd", NAN, nan_from=1, seeds=["nan"] * 4)}
    verdict, evidence = examples.judge(rows["doc003-ex1/sgd"], rows)
    assert verdict == "not testable"
    assert "dead network at every seed" in evidence and "every ReLU unit outputs 0 on every row" in evidence
    control_verdict, control_evidence = examples.judge(rows["doc003-ex1/sgd-raw"], rows)
    assert control_verdict == "control" and "every ReLU unit dead at the end" in control_evidence
    assert rows["doc003-ex1/sgd-raw"].seed_rate.dead == 5


def test_the_final_loss_is_seed_0_plus_the_range_over_seeds():
    row = _row("doc000-ex1", [10.0, 9.0, 8.0], seeds=["stalled", "nan", "stalled", "stalled"])
    row.seeds[1].final_loss, row.seeds[3].final_loss, row.seeds[4].final_loss = 2.5, 30.0, 9.0
    assert row.result.verdict.final_loss == 8.0
    assert row.final_loss_range == (2.5, 30.0)     # the NaN seed has no final loss
    rec = examples_report.example_record(row)
    assert (rec["final_loss"], rec["final_loss_seed_min"], rec["final_loss_seed_max"]) == ("8.0", "2.5", "30.0")
    assert rec["seeds"] == "0 1 2 3 4" and rec["seeds_nonfinite"] == 1


# --- the table from real runs ------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_writes_the_table_from_real_runs_logged_to_mlflow(tmp_path, store):
    """`python -m nanbench.studies.examples` shortened: every example and variant at most 1 epoch (as written
    too) at 2 seeds, one claim's sweep; the table, the CSVs and the MLflow runs agree."""
    from mlflow.tracking import MlflowClient

    out = tmp_path / "results"
    assert examples.main(["--out", str(out), "--tracking-uri", store, "--epochs-cap", "1",
                          "--claims", "nan_inputs", "--seeds", "2"]) == 0
    with (out / "examples.csv").open() as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(rows) == [e.key for e in ALL]
    required = ("doc", "example", "as_written", "outcome", "final_loss", "final_loss_seed_min",
                "final_loss_seed_max", "seeds", "seeds_nonfinite", "dead_fraction", "first_nonfinite_epoch", "claim",
                "verdict", "wall_s", "steps_per_s", "run_id")
    assert all(c in next(iter(rows.values())) for c in required)

    # the as-written record: the code ran, or the exact error; the equivalent says so
    for key in ("doc000-ex1", "doc000-ex2", "doc000-ex3", "doc003-ex1"):
        assert rows[key]["as_written"] == "ran" and rows[key]["ran_as"] == "as written"
        assert rows[key]["matches_as_written"] == "yes"  # nanbench's forensic fit = the code's own fit
    assert rows["doc003-ex2"]["as_written"] == "NameError: name 'X_train' is not defined"
    assert rows["doc003-ex2"]["as_written_with_data"] == "ran"
    assert rows["doc003-ex3"]["as_written_with_data"] == "ValueError: Could not interpret loss identifier: huber_loss"
    assert rows["doc003-ex2"]["ran_as"] == rows["doc003-ex3"]["ran_as"] == "equivalent"
    assert "epochs=100 capped at 1 (--epochs-cap)" in rows["doc003-ex3"]["changes"]
    assert "input_shape" in rows["doc000-ex1"]["warnings"]
    assert all(r["ran_as"] == "variant" for k, r in rows.items() if "/" in k)
    for r in rows.values():
        assert r["outcome"] in OUTCOMES and r["verdict"] in examples.VERDICTS
        assert int(r["steps"]) <= 8  # capped: at most 1 epoch of 256 rows in batches of 32
        assert r["seeds"] == "0 1"    # seed 0 in this process, seed 1 in the worker

    # MLflow: one run per row in experiment `examples`, the same outcome, finite metrics only
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("examples")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=1000)}
    assert set(runs) == {r["run_id"] for r in rows.values()}
    for r in rows.values():
        run = runs[r["run_id"]]
        assert run.data.tags["outcome"] == r["outcome"] and run.data.tags["verdict"] == r["verdict"]
        assert run.data.tags["example_key"] == r["key"] and "first_nonfinite_source" in run.data.tags
        assert all(math.isfinite(v) for v in run.data.metrics.values())
    claim_exp = client.get_experiment_by_name("claim_nan_inputs")
    assert len(client.search_runs([claim_exp.experiment_id], max_results=1000)) == 36   # 12 x 3 seeds

    with (out / "claims.csv").open() as f:
        claim_rows = list(csv.DictReader(f))
    assert {r["claim"] for r in claim_rows} == {"nan_inputs"}
    assert sum(int(r["runs"]) for r in claim_rows) == 36
    assert {r["steps"] for r in claim_rows} == {"160"}
    md = (out / "examples.md").read_text()
    import keras
    import tensorflow as tf
    assert f"TensorFlow {tf.__version__}" in md and f"Keras {keras.__version__}" in md
    assert f"NumPy {np.__version__}" in md and "sweeps/claim_nan_inputs.yaml" in md
    assert all(f"| {doc} | ex{n} | " in md for doc in ("doc000", "doc003") for n in (1, 2, 3))
    assert "final loss over 2 seeds" in md and "difference [95% CI]" in md
