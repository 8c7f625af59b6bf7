"""nanbench.studies.diagnose.run's pure parts: which run is the reference (the boundary's seed),
when the boundary search is skipped, and what the seeds replicate (no training)."""

from __future__ import annotations

from nanbench.config import compose
from nanbench.forensics import Verdict
from nanbench.result import RunResult
from nanbench.spec import from_config
from nanbench.studies.diagnose.run import boundary_run, boundary_skip, reference_run, replication
from nanbench.studies.diagnose.tries import Try

SPEC = from_config(compose([]))


def run(outcome: str, step: int | None = None, source: str | None = None, seed: int = 0) -> RunResult:
    verdict = Verdict(outcome=outcome, first_nonfinite_step=step, first_nonfinite_source=source, first_inf_step=None,
                      first_nan_step=step, initial_loss=1.0, final_loss=None if step is not None else 0.5,
                      min_loss=None)
    return RunResult(spec=SPEC.replace(train={"seed": seed}), outcome=outcome, verdict=verdict)


def test_the_reference_is_a_seed_that_went_nonfinite_even_when_the_first_only_stalled():
    original = Try(None, SPEC, results=[run("diverged", seed=0), run("nan", 5, "loss", seed=1),
                                        run("converged", seed=2)])
    assert reference_run(original).spec.train.seed == 1
    stalled = Try(None, SPEC, results=[run("converged"), run("stalled", seed=1), run("converged", seed=2)])
    assert reference_run(stalled).spec.train.seed == 1


def test_the_boundary_is_skipped_only_for_a_nan_at_step_0_before_any_update():
    assert "from the data" in boundary_skip(run("nan", 0, "input"))
    assert "no learning rate can change it" in boundary_skip(run("nan", 0, "loss"))
    assert boundary_skip(run("nan", 0, "weights")) is None  # the first update made it: the lr matters
    assert boundary_skip(run("nan", 3, "input")) is None and boundary_skip(run("stalled")) is None
    # searched at a seed whose NaN the learning rate can change, where one has it
    mixed = Try(None, SPEC, results=[run("converged"), run("nan", 0, "loss", seed=1),
                                     run("nan", 4, "gradients", seed=2)])
    assert reference_run(mixed).spec.train.seed == 1 and boundary_run(mixed).spec.train.seed == 2
    at_step_0 = Try(None, SPEC, results=[run("nan", 0, "input", seed=s) for s in range(3)])
    assert boundary_skip(boundary_run(at_step_0)) is not None


def test_replication_says_what_the_seeds_vary():
    assert replication(SPEC) == "each seed its own initial weights"
    keras_model = SPEC.replace(model={"name": "keras", "reinit": False})
    assert replication(keras_model).startswith("replication over shuffle order only (train.shuffle is off")
    assert replication(SPEC.replace(model={"name": "keras", "reinit": None})).startswith("seed 0 starts from the saved")


def test_a_dead_output_is_a_finding_never_nothing_to_fix(tmp_path):
    """A relu output layer off on every row (bias -10): every gradient is exactly 0, and the loss on
    targets near 0 is already under converge_abs, so each seed 'converged': diagnose says dead."""
    import keras
    import numpy as np
    from nanbench.run import execute
    from nanbench.studies.diagnose.run import Diagnosis, describe_original
    from nanbench.studies.diagnose.spec import DiagnoseSpec
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 3))
    np.savez(tmp_path / "d.npz", X=X, y=1e-3 * rng.standard_normal(32))
    keras.utils.set_random_seed(0)
    off = keras.initializers.Constant(-10.0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="relu", bias_initializer=off)])
    model.compile(loss="mse")
    model.save(tmp_path / "m.keras")
    spec = from_config(compose(["dataset=npz", f"dataset.path={tmp_path / 'd.npz'}", "dataset.task=regression",
                                "model=keras", f"model.path={tmp_path / 'm.keras'}", "train.epochs=2",
                                "train.engine=fused"]))
    original = Try(None, spec, results=[execute(spec.replace(train={"seed": s})) for s in range(3)])
    assert original.trained_seeds == 3  # 'converged' at every seed: the old answer was "nothing to fix"
    d = Diagnosis(spec=spec, settings=DiagnoseSpec(seeds=3), name="dead", original=original)
    s = d.summary()
    assert not d.nothing_to_fix and s["verdict"] != "nothing to fix"
    assert s["dead_output"].startswith("dead output: every gradient norm is exactly 0 for the last 2 steps")
    assert s["loss"] == "compiled mse (the model's own)"
    assert any(line.strip().startswith("dead output") for line in describe_original(d))
