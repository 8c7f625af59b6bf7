"""nanbench.studies.examples.judge: verdicts from planted runs whose answer is known."""

from __future__ import annotations

from nanbench.studies.examples.judge import judge

FINITE, NAN = [10.0, 9.0, 8.0], [10.0, 1e30, 1.0]


def test_verdicts_follow_the_runs_over_seeds(make_row):
    rows = {"doc000-ex1": make_row("doc000-ex1", FINITE, seeds=["stalled"] * 4),
            "doc000-ex2": make_row("doc000-ex2", FINITE, seeds=["stalled"] * 4)}
    assert judge(rows["doc000-ex1"], rows)[0] == "refuted"          # claimed NaN, finite at every seed
    assert judge(rows["doc000-ex2"], rows)[0] == "not testable"     # nothing to prevent
    rows["doc000-ex1/sgd"] = make_row("doc000-ex1/sgd", NAN, nan_from=2, seeds=["nan"] * 4)
    rows["doc000-ex2/sgd"] = make_row("doc000-ex2/sgd", FINITE, seeds=["improving"] * 4)
    assert judge(rows["doc000-ex1/sgd"], rows)[0] == "supported"
    verdict, evidence = judge(rows["doc000-ex2/sgd"], rows)
    assert verdict == "supported" and "nan from step 2" in evidence
    assert "with the remedy 0/5 and without it 5/5: difference -1.00" in evidence
    # the remedy's runs go NaN too: a tie, no effect (it was "refuted" with one seed)
    rows["doc000-ex2/sgd"] = make_row("doc000-ex2/sgd", NAN, nan_from=1, seeds=["nan"] * 4)
    assert judge(rows["doc000-ex2/sgd"], rows)[0] == "no effect"
    # the remedy turns NaN where its partner stays finite at every seed: a significant reversal
    rows["doc000-ex1/sgd"] = make_row("doc000-ex1/sgd", FINITE, seeds=["stalled"] * 4)
    assert judge(rows["doc000-ex2/sgd"], rows)[0] == "refuted"
    rows["doc000-ex3"] = make_row("doc000-ex3", [1.0, 5.0, 20.0], seeds=["diverged"] * 4)   # finite but diverged
    assert judge(rows["doc000-ex3"], rows)[0] == "refuted"
    rows["doc003-ex1/raw"] = make_row("doc003-ex1/raw", FINITE)
    assert judge(rows["doc003-ex1/raw"], rows)[0] == "control"


def test_a_claimed_nan_at_some_seeds_only_is_supported_under_conditions(make_row):
    rows = {"doc000-ex1": make_row("doc000-ex1", NAN, nan_from=1, seeds=["nan", "stalled", "stalled", "nan"])}
    verdict, evidence = judge(rows["doc000-ex1"], rows)
    assert verdict == "supported under conditions"
    assert "non-finite in 3 of 5 seeds (0, 1, 4)" in evidence


def test_a_dead_control_is_flagged_not_counted_as_a_finite_control(make_row):
    """doc003 ex1's SGD variant was "refuted" because its raw-X control stayed finite: every ReLU
    unit of that control is dead (a constant prediction). Its finite loss is no baseline."""
    rows = {"doc003-ex1/sgd-raw": make_row("doc003-ex1/sgd-raw", FINITE, seeds=["improving", "diverged", "stalled",
                                                                                "improving"], dead=1.0),
            "doc003-ex1/sgd": make_row("doc003-ex1/sgd", NAN, nan_from=1, seeds=["nan"] * 4)}
    verdict, evidence = judge(rows["doc003-ex1/sgd"], rows)
    assert verdict == "not testable"
    assert "dead network at every seed" in evidence and "every ReLU unit outputs 0 on every row" in evidence
    control_verdict, control_evidence = judge(rows["doc003-ex1/sgd-raw"], rows)
    assert control_verdict == "control" and "every ReLU unit dead at the end" in control_evidence
    assert rows["doc003-ex1/sgd-raw"].seed_rate.dead == 5


def test_a_missing_partner_is_not_testable(make_row):
    rows = {"doc000-ex2": make_row("doc000-ex2", FINITE, seeds=["stalled"] * 4)}
    verdict, evidence = judge(rows["doc000-ex2"], rows)
    assert verdict == "not testable" and "doc000-ex1 is missing or failed" in evidence


def test_finite_but_untrained_is_no_fix_and_no_stable_training(make_row):
    """Planted: a remedy whose every seed stays finite but stalls, against a partner that is NaN at
    every seed; and a claimed stable run that is finite but stalls at every seed. Neither trained:
    'avoids NaN, does not train', never 'supported'. With every seed trained, both are supported."""
    stalled = [10.0, 9.95, 9.9]   # the whole-data loss falls by 1%: finite, not trained
    rows = {"doc000-ex1/sgd": make_row("doc000-ex1/sgd", NAN, nan_from=2, seeds=["nan"] * 4),
            "doc000-ex2/sgd": make_row("doc000-ex2/sgd", stalled, seeds=["stalled"] * 4),
            "doc000-ex3": make_row("doc000-ex3", stalled, seeds=["stalled"] * 4)}
    verdict, evidence = judge(rows["doc000-ex2/sgd"], rows)
    assert verdict == "avoids NaN, does not train" and "trained with the remedy in 0 of 5 seeds" in evidence
    verdict, evidence = judge(rows["doc000-ex3"], rows)
    assert verdict == "avoids NaN, does not train" and "trains at none" in evidence
    rows["doc000-ex2/sgd"] = make_row("doc000-ex2/sgd", FINITE, seeds=["converged"] * 4)
    rows["doc000-ex3"] = make_row("doc000-ex3", FINITE, seeds=["improving"] * 4)
    assert judge(rows["doc000-ex2/sgd"], rows)[0] == "supported"
    assert judge(rows["doc000-ex3"], rows)[0] == "supported"
