"""The documents' prose claims, and the causes of NaN people report on the Keras and TensorFlow
trackers (issue 21: definitions.ISSUE_CLAIMS), each judged by counts from a sweep that isolates
its factor.

Each claim names one factor (a config key), the levels the documents blame or recommend
(``treatment``), the levels they contrast them with (``control``), and whether the treatment is
said to make non-finite runs more common (``raises``: "outliers cause NaN") or less common
(``lowers``: "clipping prevents it"). Levels the sweep holds that the documents do not name are
``beside``: judged against the same controls and reported next to the verdict, never pooled
into it (RobustScaler beside standardization and min-max). Its grid is a sweep file
``sweeps/<sweep>.yaml`` in Hydra's sweeper format (``hydra.sweeper.params``: comma-separated
values per key, product over keys; ``sweep.inner``: looped inside each job).

Every claim sweep (tests/studies/claims/test_claims_sweeps.py checks them):

- holds only the conditions the claim is about (no NaN-input data for clipping);
- repeats each configuration over at least 3 seeds (``train.seed``), so that a cell's rate has
  an interval;
- gives every dataset the same optimizer steps (``train.steps``, :data:`STEPS` = 20 epochs of the
  256-row sets) and spans each configuration's stable -> unstable transition in learning rate
  (decades from 1e-8, where plain SGD is stable even on the unscaled data);
- for a remedy (``lowers``), trains every run at two budgets, 1x and 4x the steps
  (``train.steps: [160, 640]``), so that it can tell a remedy that *prevents* the non-finite run
  (still finite at 4x) from one that only *postpones* it (finite at 1x, non-finite at 4x).

Runs are grouped into *cells*: runs that agree on every swept key except the factor, the seed
and the budget. In each cell every treatment level is compared with every control level, as the
fraction of runs that ended inf or NaN over the seeds; the comparison's difference, its 95%
interval, its status and the claim's verdict are nanbench.studies.verdicts' (supported, supported under
conditions, no effect, refuted, not testable), once per budget. Finite runs whose every ReLU unit
is dead are set aside and counted (a constant-output network is no healthy control).

Op-level probes back four claims: Keras's sigmoid, softmax and ReLU applied to extreme finite
inputs (values and gradients checked for inf/NaN), what Keras's clipping arguments do to one
real gradient (doc003 example 2 says clipnorm=1.0 "limits the norm of the gradients to 1.0"),
and sqrt(mse)'s gradient where the fit is exact.
"""

from nanbench.studies.claims.definitions import BUDGETS, CLAIMS, ISSUE_CLAIMS, MIN_SEEDS, STEPS, Claim
from nanbench.studies.claims.judging import Judged, judge, level_role
from nanbench.studies.claims.probes import PROBES, activation_probe, clipping_probe, sqrt_probe
from nanbench.studies.claims.run import run_claims
from nanbench.studies.claims.sweeps import RunRecord, Sweep, load_sweep, run_sweep

__all__ = ["BUDGETS", "CLAIMS", "Claim", "ISSUE_CLAIMS", "Judged", "MIN_SEEDS", "PROBES", "RunRecord", "STEPS",
           "Sweep", "activation_probe", "clipping_probe", "judge", "level_role", "load_sweep", "run_claims",
           "run_sweep", "sqrt_probe"]
