"""nanbench.studies.diagnose.rank and the try's measures: planted tries whose order is known (no training)."""

from __future__ import annotations

from conftest import default_spec
from nanbench.forensics import Verdict
from nanbench.result import RunResult
from nanbench.studies.diagnose.catalogue import Change
import numpy as np

from nanbench.forensics import StepSeries
from nanbench.studies.diagnose.rank import avoids_nan_only, fixes, pairs, ranked
from nanbench.studies.diagnose.run import remedy
from nanbench.studies.diagnose.tries import Try


def run(outcome: str, final: float | None = None, initial: float = 10.0, losses=None) -> RunResult:
    """A planted run; with `losses` (the whole data's loss after each step), its recorded time to
    target is the first step at which that loss is at most 0.1 x the initial one."""
    reached = None if losses is None else next((i for i, v in enumerate(losses) if v <= 0.1 * initial), None)
    verdict = Verdict(outcome=outcome, first_nonfinite_step=None, first_nonfinite_source=None, first_inf_step=None,
                      first_nan_step=None, initial_loss=initial, final_loss=final, min_loss=final,
                      steps_to_target=reached)
    series = None
    if losses is not None:
        n = len(losses)
        series = StepSeries(loss=np.asarray(losses, dtype=np.float64), grad_norm=np.ones(n), weight_norm=np.ones(n),
                            flags=np.zeros(n, dtype=np.int64), epoch_loss=np.asarray(losses[-1:]), steps_per_epoch=n,
                            initial_loss=initial, final_loss=final if final is not None else np.nan)
    return RunResult(spec=default_spec(), outcome=outcome, verdict=verdict, series=series)


def planted(name: str, key: str, outcomes: list[tuple], distance: float = 1.0, initial: float = 10.0) -> Try:
    """A try whose seeds' runs are (outcome, final loss[, per-step losses])."""
    return Try(change=Change(name, settings=((key, 1),)), spec=default_spec(), distance=distance,
               results=[run(o[0], o[1], initial, *o[2:]) for o in outcomes])


def test_trained_in_more_seeds_first_then_lower_relative_loss_then_the_smaller_change():
    every_seed_high = planted("all seeds, L/L0 0.5", "a", [("improving", 5.0)] * 3)
    every_seed_low_units = planted("all seeds, L/L0 0.1 in other units", "b",
                                   [("converged", 0.1)] * 3, initial=1.0)  # L is tiny only in its units
    every_seed_low_far = planted("all seeds, L/L0 0.1, farther", "c", [("converged", 1.0)] * 3, distance=3.0)
    two_seeds = planted("two seeds", "d", [("converged", 0.01), ("converged", 0.01), ("nan", None)])
    never = planted("never", "e", [("nan", None)] * 3)
    order = ranked([never, two_seeds, every_seed_high, every_seed_low_far, every_seed_low_units])
    assert [t.name for t in order] == ["all seeds, L/L0 0.1 in other units", "all seeds, L/L0 0.1, farther",
                                       "all seeds, L/L0 0.5", "two seeds"]
    assert [t.name for t in fixes(order, 3)] == [t.name for t in order[:3]]
    assert order[0].final_loss == 0.1 and order[0].relative_loss == 0.1


def test_a_remedy_that_stays_finite_but_stalls_is_never_ranked_as_a_fix():
    """Planted as on the README's houses example: Adam and Huber stay finite in every seed but
    the loss barely moves (L/L0 0.964, 1.000), or grows (2.56); clipping trains at L/L0 0.06."""
    adam = planted("Adam instead of sgd", "optimizer", [("stalled", 9.64)] * 3, distance=1.0)
    huber = planted("Huber instead of mse", "loss", [("stalled", 10.0)] * 3, distance=1.0)
    grows = planted("grows", "loss.delta", [("stalled", 25.6)] * 3, distance=0.5)
    clip = planted("clipnorm=1", "clipping", [("converged", 0.627)] * 2 + [("nan", None)], distance=2.0)
    assert [t.name for t in ranked([adam, huber, grows, clip])] == ["clipnorm=1"]  # trains in 2/3: a remedy
    assert fixes([adam, huber, grows, clip], 3) == []  # not in every seed, and the others train in none
    assert [t.name for t in avoids_nan_only([adam, huber, grows, clip])] == ["Adam instead of sgd",
                                                                            "Huber instead of mse", "grows"]
    assert remedy(adam, 3)["verdict"] == "avoids NaN, does not train"
    assert remedy(grows, 3)["verdict"] == "avoids NaN, does not train; the loss grew"
    assert remedy(clip, 3)["verdict"] == "trains in 2 of 3 seeds" and remedy(clip, 3)["trained_seeds"] == 2


def test_time_to_target_breaks_a_tie_in_relative_loss():
    """Same L/L0: the change that reached 0.1 x L0 (1.0 here) in fewer steps first."""
    slow = planted("slow", "a", [("converged", 0.5, [10, 8, 6, 4, 2, 0.9, 0.5])] * 3, distance=0.1)
    fast = planted("fast", "b", [("converged", 0.5, [10, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5])] * 3, distance=5.0)
    assert fast.steps_to_target == 1 and slow.steps_to_target == 5
    assert [t.name for t in ranked([slow, fast])] == ["fast", "slow"]


def test_seeds_that_ran_the_same_run_count_as_one_distinct_run():
    same = planted("same", "a", [("converged", 0.5, [10, 1, 0.5])] * 3)
    two = planted("two", "b", [("converged", 0.5, [10, 1, 0.5])] * 2 + [("converged", 0.5, [10, 2, 0.5])])
    nan_twice = planted("nan twice", "c", [("nan", None, [10, np.nan])] * 2 + [("converged", 0.5, [10, 1, 0.5])])
    assert same.distinct_runs == 1 and two.distinct_runs == 2 and nan_twice.distinct_runs == 2
    assert remedy(same, 3)["distinct_runs"] == 1 and nan_twice.nonfinite_seeds == [True, True, False]


def test_pairs_come_from_the_best_singles_and_never_touch_one_key_twice():
    lr3 = planted("lr/3", "optimizer.lr", [("nan", None)] * 2 + [("improving", 5.0)])
    lr10 = planted("lr/10", "optimizer.lr", [("nan", None), ("improving", 5.0), ("improving", 5.0)])
    clip = planted("clip", "clipping.kind", [("nan", None), ("diverged", None), ("improving", 8.0)])
    worst = planted("huber", "loss.name", [("nan", None)] * 3)
    got = [c.name for c in pairs([lr3, lr10, clip, worst], candidates=3)]
    # best first: lr/10 (2 seeds), lr/3 (1 seed, L/L0 0.5), clip (1 seed, 0.8); huber is not among the 3
    assert got == ["lr/10 + clip", "lr/3 + clip"]


def test_a_change_that_learns_only_the_targets_mean_is_no_fix():
    """Planted: an MSE regression whose 'trained' run ends at the loss of predicting y's mean (its
    L / L0 tiny only because L0 is mostly the mean) is no fix; one below it is."""
    from dataclasses import replace

    from nanbench.data import load
    from nanbench.studies.diagnose.tries import constant_loss, only_constant

    spec = default_spec()
    assert spec.model.task == "regression" and spec.loss.keras_class() == "keras.losses.MeanSquaredError"
    y = load(spec.dataset, spec.preprocess).y
    baseline = float(np.mean(np.var(np.asarray(y, dtype=np.float64), axis=0)))
    mean_only = run("converged", baseline * 0.99, initial=baseline * 1000)
    learns = run("converged", baseline * 0.5, initial=baseline * 1000)
    assert constant_loss(mean_only) == baseline
    assert only_constant(mean_only) and not only_constant(learns)
    constant = Try(change=Change("hidden tanh", settings=(("a", 1),)), spec=spec, results=[mean_only] * 3)
    real = Try(change=Change("scaling", settings=(("b", 1),)), spec=spec, results=[learns] * 3, distance=3.0)
    assert constant.trained_seeds == 3 and constant.constant_seeds == 3 and real.constant_seeds == 0
    assert [t.name for t in ranked([constant, real])] == ["scaling", "hidden tanh"]  # despite its L/L0 of 0.001
    assert remedy(constant, 3)["verdict"] == "trains; predicts no better than a constant in 3 seed(s)"
    huber = replace(spec, loss=replace(spec.loss, name="huber", cls="keras.losses.Huber"))
    assert constant_loss(RunResult(spec=huber, outcome="converged")) is None  # no constant baseline known
