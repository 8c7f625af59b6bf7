"""nanbench.studies.examples.report (and the row's seed facts it writes): planted rows, no training."""

from __future__ import annotations

from nanbench.studies.examples.report import example_record


def test_the_final_loss_is_seed_0_plus_the_range_over_seeds(make_row):
    row = make_row("doc000-ex1", [10.0, 9.0, 8.0], seeds=["stalled", "nan", "stalled", "stalled"])
    row.seeds[1].final_loss, row.seeds[3].final_loss, row.seeds[4].final_loss = 2.5, 30.0, 9.0
    assert row.result.verdict.final_loss == 8.0
    assert row.final_loss_range == (2.5, 30.0)     # the NaN seed has no final loss
    rec = example_record(row)
    assert (rec["final_loss"], rec["final_loss_seed_min"], rec["final_loss_seed_max"]) == ("8.0", "2.5", "30.0")
    assert rec["seeds"] == "0 1 2 3 4" and rec["seeds_nonfinite"] == 1


def test_a_non_finite_run_has_no_final_loss_and_no_range(make_row):
    """A NaN run's record leaves the final loss and its range empty, never a tidy number."""
    row = make_row("doc000-ex1", [10.0, 1e30, 1.0], nan_from=1, seeds=["nan"] * 2)
    rec = example_record(row)
    assert rec["outcome"] == "nan" and rec["initial_loss"] == "10.0" and rec["final_loss"] == ""
    assert rec["first_nonfinite_step"] == 1 and rec["seeds_nonfinite"] == 3 and rec["final_loss_seed_min"] == ""
