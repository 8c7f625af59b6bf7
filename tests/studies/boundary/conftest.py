"""Planted search summaries (what nanbench.studies.boundary.run's summary() returns), for the
table, plot and callback tests that need no training."""

from __future__ import annotations

import pytest


def planted_summary(status: str, optimizer: str = "sgd", **extra) -> dict:
    found = status == "bracketed"
    s = {
        "lr_max_stable": {"bracketed": 3.9e-6, "stable_everywhere": 10.0}.get(status),
        "lr_min_unstable": {"bracketed": 4.1e-6, "unstable_everywhere": 1e-8}.get(status),
        "lr_max_trains": {"bracketed": 2e-6, "stable_everywhere": 10.0}.get(status),
        "trains_status": {"bracketed": "bracketed", "stable_everywhere": "trains_up_to_high"}.get(status,
                                                                                                "trains_nowhere"),
        "rel_precision": 0.05, "found": found, "status": status, "note": f"note {status}",
        "lr_theory": 4e-6 if found else None, "lambda_max": 5e5 if found else None,
        "theory_reason": None if found else "optimizer adam is adaptive (no closed form)",
        "measured_over_theory": 0.975 if found else None, "evaluations": 7, "lr_low": 1e-8,
        "lr_high": 10.0, "epochs": 500, "steps_per_run": 500,
        "factors": {"dataset": "doc000_outlier", "preprocess": "none", "model": "linear",
                    "optimizer": optimizer, "clipping": "none", "loss": "mse", "batch_size": 512,
                    "n_samples": 4, "full_batch": True},
    }
    s.update(extra)
    return s


@pytest.fixture
def summary():
    """planted_summary(status, optimizer="sgd", **extra): one search's summary with a known answer."""
    return planted_summary
