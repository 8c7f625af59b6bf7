"""nanbench.studies.diagnose.report: a planted summary rendered (no training)."""

from __future__ import annotations

from nanbench.studies.diagnose.report import build


def summary(**extra) -> dict:
    s = {"name": "planted", "seeds": [0, 1, 2], "outcome": "nan", "outcomes": ["nan"] * 3, "verdict": "v",
         "replication": "replication over shuffle order only", "distinct_runs": 1, "first_nonfinite_step": 2,
         "first_nonfinite_source": "gradients", "grad_norm_history": [], "per_seed": [], "target_ratio": 0.1,
         "remedies": [{"change": "clip", "trained_seeds": 3, "stable_seeds": 3, "distinct_runs": 1,
                       "relative_loss": 0.06, "steps_to_target": 163, "seconds_to_target": None, "final_loss": 1.0,
                       "overrides": ["clipping.kind=clipnorm"], "why": "", "outcomes": ["converged"] * 3}],
         "avoids_nan_only": [{"change": "Huber instead of mse", "trained_seeds": 0, "stable_seeds": 3,
                              "distinct_runs": 3, "relative_loss": 2.56, "steps_to_target": None,
                              "seconds_to_target": None, "final_loss": 1.0, "overrides": ["loss=huber"], "why": "",
                              "outcomes": ["stalled"] * 3}],
         "lr_max_stable": 1e-5, "lr_max_trains": None, "lr_min_unstable": 1.15e-5, "boundary_status": "bracketed",
         "boundary_seed": 1, "boundary_note": "trains at no learning rate tried", "tried": [], "runs": 6,
         "wall_s": 1.0, "parent_run_id": None}
    s.update(extra)
    return s


def test_identical_seeds_are_one_distinct_run_and_a_stalled_change_is_not_a_remedy():
    md = build(summary(), "python -m nanbench.diagnose ...").markdown()
    remedies, rest = md.split("### Avoids NaN, does not train")
    assert "1/1 distinct run (3 identical seeds)" in remedies and "3/3" not in remedies
    assert "the 3 seeds ran **1 distinct run**" in md and "replication over shuffle order only" in md
    assert "Huber instead of mse" not in remedies and "| Huber instead of mse | 3/3 | 0/3 | 2.56 |" in rest
    assert "boundary search at seed 1" in md and "every seed trains: **n/a**" in md


def test_a_skipped_boundary_says_why_in_one_line():
    note = "not searched: the first non-finite value is at step 0 (source input), from the data"
    md = build(summary(boundary_status="skipped", boundary_note=note, lr_max_stable=None), "cmd").markdown()
    assert f"Learning-rate boundary {note}." in md
