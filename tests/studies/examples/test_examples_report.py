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


def test_the_report_opens_with_one_row_per_example_and_says_what_is_false(make_row):
    """examples.md opens with example | the article says | measured | one word, and says plainly
    which claim is false as written: planted, doc000 ex1's claimed NaN finite at every seed."""
    from nanbench.studies.examples.judge import judge
    from nanbench.studies.examples.report import opening

    rows = {"doc000-ex1": make_row("doc000-ex1", [10.0, 9.95, 9.9], seeds=["stalled"] * 4),
            "doc000-ex3": make_row("doc000-ex3", [10.0, 5.0, 0.5], seeds=["converged"] * 4)}
    for row in rows.values():
        row.verdict, row.evidence = judge(row, rows)
    lines = opening(list(rows.values()))
    assert lines[0] == "| example | the article says | measured | verdict |"
    assert lines[2].startswith("| doc000 ex1 | \"Likely to produce NaN loss\"")
    assert lines[2].endswith("| finite at 5/5 seeds, trained at 0 | false |")
    assert lines[3].endswith("| finite at 5/5 seeds, trained at 5 | true |")
    assert any(line.startswith("False as written: doc000 ex1 says \"Likely to produce NaN loss\"") for line in lines)
    assert not any("doc000 ex3 says" in line for line in lines)
