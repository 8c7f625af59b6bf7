"""nanbench's words, defined once: outcomes, sources of non-finite values, and the names of the
tags and metrics every run carries in MLflow.

Everything that writes, reads, tallies or renders runs (forensics, tracking, sweep, summary,
studies) takes these names from here, so a new outcome or a renamed tag is one edit.
"""

from __future__ import annotations

# ---- outcomes (the rules are nanbench.forensics.classify's docstring) ----
# Every outcome, in the order tables list them.
OUTCOMES = ("converged", "improving", "stalled", "diverged", "inf", "nan", "error")
STABLE_OUTCOMES = ("converged", "improving", "stalled")  # finite, and not diverged
NONFINITE_OUTCOMES = ("inf", "nan")
UNSTABLE_OUTCOMES = tuple(o for o in OUTCOMES if o not in STABLE_OUTCOMES)
# The 0/1 metric per outcome a run carries (MLflow's UI can chart and filter those).
OUTCOME_FLAGS = {"is_nan": ("nan",), "is_inf": ("inf",), "is_nonfinite": NONFINITE_OUTCOMES,
                 "is_diverged": ("diverged",), "is_error": ("error",)}

# ---- where a non-finite value first appeared, in data-flow order ----
SOURCES = ("input", "loss", "gradients", "weights")
NO_SOURCE = "none"  # the source tag of a run that stayed finite

# ---- tags on every training run ----
OUTCOME = "outcome"
SOURCE = "first_nonfinite_source"
LAYER = "first_nonfinite_layer"      # which layer first held inf/NaN (nanbench.locate); NO_SOURCE if none
LAYER_PART = "first_nonfinite_part"  # ... in its output, its gradient or its weights; NO_SOURCE if none
DEVICE, ENGINE, CONFIG_HASH, ERROR = "device", "engine", "config_hash", "error"
MACHINE = "machine"  # the CPU a run trained on (nanbench.result.this_machine)
SOFTWARE = ("git_commit", "tensorflow_version", "keras_version", "numpy_version", MACHINE)
RUN_TAGS = (OUTCOME, SOURCE, LAYER, LAYER_PART, DEVICE, ENGINE, CONFIG_HASH, ERROR, *SOFTWARE)
SIDE_BY_SIDE = "side_by_side"  # how many runs trained in the run's call (1: alone); a record, not a factor

# ---- roles: how nanbench tells its own MLflow runs apart ----
ROLE = "nanbench.role"
PARENT, CHILD = "parent", "child"          # a sweep's parent run and its training runs
SEARCH, EVALUATION = "search", "evaluation"  # a boundary search and its evaluations
DIAGNOSIS, TRY = "diagnosis", "try"          # a diagnosis (nanbench.diagnose) and its tries' runs
PARENT_RUN_ID = "mlflow.parentRunId"         # MLflow's own tag linking a child to its parent
COMPLETE_TAG = "nanbench.complete"  # on a parent run: the fingerprint of a grid it left all FINISHED
FINISHED_TAG = "nanbench.finished"  # ... and the experiment's distinct FINISHED configurations at that moment

# ---- metrics on every training run ----
TIMINGS = ("data_s", "build_s", "first_step_s", "train_s", "wall_s", "steps_per_s", "samples_per_s")
# skipped_steps: updates the loss scaler skipped (mixed_float16; nanbench.result.RunResult.skipped_steps)
# trained: 1 for a run that trained (nanbench.forensics.trained), else 0; seconds_to_target and
# steps_to_target: time to target (nanbench.result.RunResult; absent when never reached)
RUN_METRICS = (*TIMINGS, "steps_run", "skipped_steps", "n_samples", "dead_fraction", "dead_fraction_at_nonfinite",
               "trained", "seconds_to_target")
VERDICT_METRICS = ("initial_loss", "final_loss", "min_loss", "first_nonfinite_step",
                   "first_inf_step", "first_nan_step", "steps_to_target")
# what a summary keeps as columns of each run (not the per-epoch series; the is_* flags say what
# the outcome tag says)
SUMMARY_METRICS = ("first_step_s", "train_s", "wall_s", "steps_per_s", "samples_per_s", "steps_run", "skipped_steps",
                   *VERDICT_METRICS, "dead_fraction", "dead_fraction_at_nonfinite", "trained", "seconds_to_target")
# per-epoch series (step = epoch): the epoch's loss and its largest gradient norm; with
# tracking.log_steps also per step (step = optimizer step)
EPOCH_METRICS = ("loss", "grad_norm")
STEP_METRICS = ("step_loss", "step_grad_norm")
