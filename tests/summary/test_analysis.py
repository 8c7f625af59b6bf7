"""Roles of factors, differences of rates, and the findings of a run table where a cause that
explains itself (NaN inputs) and a real learning-rate effect (SGD without clipping) coexist."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from nanbench.summary import analysis as A

from nanbench.summary import training as T
from nanbench.summary import findings as F
from nanbench.summary import groups as G
from tools import synthetic
from nanbench.summary.attribution import attribution

DESCRIPTORS = ("dataset.n_samples", "dataset.outlier_fraction", "dataset.nan_fraction")


@pytest.fixture(scope="module")
def mixed():
    runs, factors = synthetic.mixed_table()
    varying, _ = A.split_factors(runs, factors)
    roles = A.factor_roles(runs, varying)
    runs = A.add_composites(runs, varying)
    return runs, roles, A.outcome_flags(runs)


def test_newcombe_difference_interval_matches_the_papers_example():
    # Newcombe (1998), Table II, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    d, low, high = A.difference_interval(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert np.isnan(A.difference_interval(0, 0, 1, 2)[1])


def test_dataset_descriptors_and_nested_parameters_are_attributes_not_factors(mixed):
    runs, roles, _ = mixed
    assert list(roles) == ["dataset.name", "optimizer.name", "optimizer.lr", "clipping.kind", "loss.name",
                           "train.seed"]
    assert sorted(roles["dataset.name"]) == sorted(DESCRIPTORS)
    table = A.attribute_table(runs, "dataset.name", roles["dataset.name"]).set_index("dataset.name")
    assert table.loc["nan_inputs", "dataset.nan_fraction"] == "0.01"
    assert table.loc["clean", "dataset.nan_fraction"] == "n/a"
    # a descriptor swept within one dataset is a factor of its own; crossed factors stay factors
    frame = pd.DataFrame({"dataset.name": ["a", "a", "b", "b"], "dataset.noise": [0.1, 0.2, 0.1, 0.2],
                          "x": [1, 2, 1, 2], "x_alias": [10, 20, 10, 20]})
    roles = A.factor_roles(frame, ["dataset.name", "dataset.noise", "x", "x_alias"])
    assert roles == {"dataset.name": [], "dataset.noise": ["x", "x_alias"]}


def test_group_search_recovers_the_conjunction_that_holds_the_non_finite_runs(mixed):
    runs, roles, flags = mixed
    rest = runs["first_nonfinite_source"].ne("input").to_numpy()
    target = flags["nonfinite"].to_numpy(bool)[rest]
    group = G.find_group(runs.loc[rest], target, [f for f in roles if f not in A.REPEAT_FACTORS])
    assert dict(group.keep) == {"optimizer.name": ("sgd",), "clipping.kind": ("none",)}
    assert group.text(runs) == "`optimizer.name` = sgd and `clipping.kind` = none"
    assert G.find_group(runs, np.zeros(len(runs), bool), list(roles)) is None


def test_findings_name_the_explained_cause_and_the_unmasked_lr_effect_with_their_counts(mixed):
    runs, roles, flags = mixed
    found = F.derive(runs, flags, roles)
    texts = [f.text for f in found.items]
    assert 4 <= len(texts) <= G.MAX_FINDINGS
    assert texts[0].startswith("Of the 600 runs, 252 turned non-finite (252 NaN)")
    # 1. the self-explaining cause, set aside
    assert found.explained.sum() == 200
    assert texts[1].startswith("Every run with `dataset.name` = nan_inputs (`dataset.n_samples` = 512, "
                               "`dataset.nan_fraction` = 0.01) turned non-finite at the first batch holding")
    assert "200/200, 1.000" in texts[1] and "nothing else mattered there" in texts[1]
    assert "other 400 runs" in texts[1]
    # 2. where the others concentrate: SGD without clipping, every one of them
    assert "Among the other 400 runs, every one of the 52 non-finite runs had `optimizer.name` = sgd and " \
           "`clipping.kind` = none: 52/100, 0.520" in texts[2]
    assert "against 0/300, 0.000" in texts[2]
    # 3. the learning rate effect, not masked by the explained runs
    lr = next(t for t in texts if "learning rate" in t)
    assert "rises with the learning rate: 2/20, 0.100" in lr and "20/20, 1.000 [0.839, 1.000] at lr 1" in lr
    assert "not even the smallest (0.0001)" in lr
    # 4. what would have prevented it: the other level of each restricted factor
    remedy = next(t for t in texts if t.startswith("What would have prevented them"))
    assert "`optimizer.name` = adam instead kept every run finite: 0/100" in remedy
    assert "`clipping.kind` = clipnorm instead kept every run finite: 0/100" in remedy
    # dead networks, from the dead_fraction column
    dead = next(t for t in texts if "dead networks" in t)
    assert dead.startswith("40 of the 348 finite runs")
    assert "`optimizer.name` = adam and `optimizer.lr` = 1 (40/40" in dead
    # every statement links to a table of the report
    for f in found.items:
        assert re.search(r"\(\[table\]\(#[\w-]+\)\)$", f.text), f.text
        assert f.table is None or not f.table.empty
    # no descriptor is named as a factor of a finding
    for text in texts[2:]:
        for d in DESCRIPTORS:
            assert d not in text


def test_attribution_of_the_rest_has_only_non_finite_leaves_and_no_descriptor(mixed):
    runs, roles, flags = mixed
    keep = runs["first_nonfinite_source"].ne("input").to_numpy()
    for data, fl in ((runs.loc[keep], flags.loc[keep]), (runs, flags)):
        att = attribution(data, list(roles), fl)
        assert att.rules and all(r.predicts_nonfinite for r in att.rules)
        factors = {c.factor for r in att.rules for c in r.conditions} | set(att.importance["factor"])
        assert not factors & set(DESCRIPTORS)
    att = attribution(runs.loc[keep], list(roles), flags.loc[keep])
    lr_rank = att.importance.set_index("factor").loc[A.LR, "rank"]
    assert lr_rank <= 3  # with the explained runs set aside the learning rate counts


def test_a_stable_side_of_the_grid_is_named_as_what_would_have_prevented_it():
    runs, factors = synthetic.mixed_table(share=(0.0, 0.0, 0.5, 0.7, 1.0))
    varying, _ = A.split_factors(runs, factors)
    roles = A.factor_roles(runs, varying)
    runs = A.add_composites(runs, varying)
    texts = [f.text for f in F.derive(runs, A.outcome_flags(runs), roles).items]
    assert ("every one of the 44 non-finite runs had `optimizer.name` = sgd and `optimizer.lr` ≥ 0.01 and "
            "`clipping.kind` = none: 44/60") in texts[2]
    lr = next(t for t in texts if "learning rate" in t)
    assert lr.startswith("With `optimizer.name` = sgd and `clipping.kind` = none, the non-finite rate rises")
    assert "Every such run stayed finite up to lr 0.001." in lr and "not even the smallest" not in lr
    remedy = next(t for t in texts if t.startswith("What would have prevented them"))
    assert ("with `optimizer.name` = sgd and `clipping.kind` = none, `optimizer.lr` ≤ 0.001 instead kept every "
            "run finite: 0/40") in remedy


def test_a_remedy_is_measured_on_the_same_configurations_otherwise():
    # the full grid: Adam beside SGD everywhere, so Adam is a measured remedy
    runs, factors = synthetic.mixed_table(share=(0.0, 0.0, 0.5, 0.7, 1.0))

    def remedy(runs):
        varying, _ = A.split_factors(runs, factors)
        roles = A.factor_roles(runs, varying)
        frame = A.add_composites(runs, varying)
        texts = [f.text for f in F.derive(frame, A.outcome_flags(frame), roles).items]
        return next(t for t in texts if t.startswith("What would have prevented them"))

    assert "`optimizer.name` = adam instead kept every run finite" in remedy(runs)


def test_twins_are_the_runs_whose_other_factors_occur_at_both_levels():
    # a grid that does not cross loss with model: rmse only with lstm, log_loss_naive only with mlp
    import numpy as np
    import pandas as pd
    from nanbench.summary.findings_text import _twins
    data = pd.DataFrame({"loss.name": ["mse", "mse", "log_loss_naive", "rmse", "rmse"],
                         "model.name": ["lstm", "mlp", "mlp", "lstm", "gru"], "optimizer.lr": [0.1] * 5})
    at, ref = _twins(data, np.ones(5, bool), "loss.name", ("mse", "log_loss_naive"), "rmse",
                     ["loss.name", "model.name", "optimizer.lr"])
    assert at.tolist() == [False, False, False, True, False]   # rmse with lstm: mse with lstm exists
    assert ref.tolist() == [True, False, False, False, False]  # ... and that mse run is its twin


def test_the_by_layer_list_adds_up_to_every_non_finite_run():
    from nanbench.summary.findings_text import _layers
    # default finding 7's case: a fourth (layer, part) pair was left out of the list
    layer = ["loss"] * 5 + ["output"] * 3 + ["output"] * 2 + ["loss", "hidden0", None]
    part = ["output"] * 5 + ["output"] * 3 + ["gradient"] * 2 + ["gradient", "weights", None]
    text = _layers(pd.DataFrame({"first_nonfinite_layer": layer, "first_nonfinite_part": part}))
    counts = [int(n) for n in re.findall(r" in (\d+)", text)]
    assert sum(counts) == len(layer)
    assert text.startswith(" By layer, first: loss (output) in 5, output (output) in 3, output (gradient) in 2")
    assert "2 other layers in 2" in text and "not located in 1" in text
    four = _layers(pd.DataFrame({"first_nonfinite_layer": layer[:11], "first_nonfinite_part": part[:11]}))
    assert four.endswith("loss (gradient) in 1.")  # four pairs: every one named


def test_the_group_table_sorts_learning_rates_as_numbers():
    from nanbench.summary.findings_text import _group_table
    from nanbench.summary.groups import Group
    data = pd.DataFrame({A.LR: [1.0, 1e-05, 0.0001, 0.1, 1e-05], "optimizer.name": ["sgd"] * 5})
    group = Group(((A.LR, (1e-05, 0.0001, 0.1, 1.0)),))
    rows = _group_table(data, np.array([1, 0, 1, 1, 0], bool), group)["runs with"].tolist()
    assert rows[:4] == [f"{A.LR} = {v}" for v in ("1e-05", "0.0001", "0.1", "1")]


def test_the_speed_section_sets_the_explained_runs_aside_and_leaves_descriptors_out(mixed, tmp_path):
    from nanbench.summary import sections as S
    from nanbench.summary.report import Report
    runs, roles, flags = mixed
    runs = runs.assign(**{"model.name": np.where(runs["loss.name"] == "mse", "mlp", "linear"),
                          "model.activation": np.where(runs["loss.name"] == "mse", "relu", "linear")})
    roles = {**roles, "model.name": ["model.activation"]}
    keep = runs["first_nonfinite_source"].ne("input").to_numpy()
    rep = Report()
    S.speed(rep, runs.loc[keep], flags.loc[keep], tmp_path, "Over the 400 runs not explained.", roles)
    md = rep.markdown()
    assert "Over the 400 runs not explained." in md
    assert "| model.name |" in md and "model.activation" not in md
    # steps to the first non-finite value: only the 52 loss NaN runs (step 7), none of the input's (step 0)
    steps = md[md.index("Steps to the first non-finite value"):]
    assert "0 (0–0)" not in steps and "7 (7–7)" in steps
    assert sum(int(n) for n in re.findall(r"n=(\d+)", steps)) == 52


def test_lr_range_decades_spans_the_learning_rates_where_most_runs_train():
    lrs = [1e-4, 1e-4, 1e-3, 1e-3, 1e-2, 1e-2, 1e-1, 1e-1]
    assert T.lr_range_decades(lrs, [0, 0, 1, 1, 1, 0, 1, 1]) == pytest.approx(2.0)  # 1e-3 .. 1e-1
    assert T.lr_range_decades(lrs, [0, 0, 0, 1, 0, 0, 0, 0]) == 0.0                 # one rate: 0 decades
    assert T.lr_range_decades(lrs, [0] * 8) is None                                 # none trains
    assert T.trains(1, 2) and not T.trains(1, 3) and not T.trains(0, 0)


def test_a_remedy_that_stays_finite_but_stalls_is_no_fix_and_comes_after_those_that_train():
    # the small learning rates stay finite but stall (the default sweep's lr = 1e-09)
    runs, factors = synthetic.mixed_table(share=(0.0, 0.0, 0.5, 0.7, 1.0), stalled_below=0.01)
    varying, _ = A.split_factors(runs, factors)
    roles = A.factor_roles(runs, varying)
    runs = A.add_composites(runs, varying)
    texts = [f.text for f in F.derive(runs, A.outcome_flags(runs), roles).items]
    assert "160 stalled (finite, no real progress): 160/600" in texts[0]
    remedy = next(t for t in texts if t.startswith("What would have prevented them"))
    stalls = remedy.index("`optimizer.lr` ≤ 0.001 instead avoids NaN, does not train: kept every run finite: 0/40")
    assert "but only 0 of them trained (0/40" in remedy[stalls:]
    # those that train come first, with their share trained and median time to target
    adam = remedy.index("`optimizer.name` = adam instead kept every run finite: 0/60")
    clip = remedy.index("`clipping.kind` = clipnorm instead kept every run finite: 0/60")
    assert adam < stalls and clip < stalls
    assert "60 of them trained (60/60, 1.000 [0.940, 1.000]), median 10 steps (0.01 s) to target" in remedy
    # learning-rate sensitivity: sgd without clipping trains at one rate (0.01), adam or clipping at 0.01..1
    assert ("`clipping.kind` = clipnorm widens the range of learning rates that train from 0 decades "
            "(`clipping.kind` = none) to 2 decades") in remedy


def test_a_remedy_is_offered_only_within_the_cause_it_was_measured_on():
    from nanbench.summary.findings_text import _context
    from nanbench.summary.groups import Group
    # a group that joined two causes: classification with log loss, sequences with MSE
    data = pd.DataFrame({"dataset.name": ["digits", "digits", "sequences", "sequences"],
                         "loss.name": ["log_loss_naive", "crossentropy", "mse", "rmse"]})
    lifted = Group((("dataset.name", ("digits", "sequences")),))
    rmse_twins = (data["dataset.name"] == "sequences").to_numpy()  # rmse exists only for sequences
    assert _context(data, lifted, rmse_twins) == "with `dataset.name` = sequences, "
    assert _context(data, lifted, np.ones(4, bool)) == "with `dataset.name` = digits or sequences, "


def test_runs_non_finite_at_initialisation_are_not_blamed_on_the_learning_rate_grid():
    runs, factors = synthetic.mixed_table()
    # the group's failures at the smallest lr failed in their first forward pass (initial loss NaN)
    first = (runs["outcome"].eq("nan") & runs["first_nonfinite_source"].eq("loss")
             & runs[A.LR].eq(1e-4)).to_numpy()
    assert first.sum() == 2
    runs.loc[first, "first_nonfinite_step"] = 0
    runs.loc[first, "initial_loss"] = np.nan
    varying, _ = A.split_factors(runs, factors)
    roles = A.factor_roles(runs, varying)
    runs = A.add_composites(runs, varying)
    lr = next(t for t in (f.text for f in F.derive(runs, A.outcome_flags(runs), roles).items)
              if "learning rate" in t)
    assert "2 of these runs were non-finite in their first forward pass" in lr
    assert "does not reach the stable side" not in lr and "stayed finite up to lr 0.0001" in lr


def test_shares_along_lr_per_optimizer_and_clipping_in_numeric_order():
    runs = pd.DataFrame({"optimizer.name": ["sgd"] * 6 + ["adam"] * 2,
                         "clipping": ["none"] * 4 + ["clipnorm"] * 2 + ["none"] * 2,
                         A.LR: [1.0, 1e-05, 1.0, 1e-05, 1.0, 1.0, 1.0, 1.0],
                         "outcome": ["nan", "stalled", "converged", "improving", "converged", "error",
                                     "improving", "inf"]}).assign(first_inf_step=np.nan, first_nan_step=np.nan)
    table = T.shares_along_lr(runs, A.outcome_flags(runs))
    sgd_none = table[(table["panel"] == "sgd") & (table["line"] == "none")]
    assert sgd_none["lr"].tolist() == [1e-05, 1.0]                    # numbers in numeric order
    assert sgd_none["trained_share"].tolist() == [0.5, 0.5] and sgd_none["nonfinite_share"].tolist() == [0.0, 0.5]
    clip = table[(table["panel"] == "sgd") & (table["line"] == "clipnorm")]
    assert clip["runs"].tolist() == [1] and clip["trained_share"].tolist() == [1.0]  # the error run left out
    assert table[table["panel"] == "adam"]["nonfinite_share"].tolist() == [0.5]
