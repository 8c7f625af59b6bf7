"""The documents' prose claims, and the causes of NaN people report on the Keras and TensorFlow
issue trackers (issue 21: ISSUE_CLAIMS): what each says, which factor it is about, and which levels
it blames or recommends; and the budgets and repeats every claim sweep must hold.

Each claim names one factor (a config key), the levels the documents blame or recommend
(``treatment``), the levels they contrast them with (``control``), and whether the treatment is
said to make non-finite runs more common (``raises``: "outliers cause NaN") or less common
(``lowers``: "clipping prevents it"). Levels the sweep holds that the documents do not name are
``beside``: judged against the same controls and reported next to the verdict, never pooled
into it (RobustScaler beside standardization and min-max).
"""

from __future__ import annotations

from dataclasses import dataclass

STEPS = 160                      # the 1x budget: 20 epochs of the 256-row sets in batches of 32
BUDGETS = (STEPS, 4 * STEPS)     # a remedy's two budgets: 1x and 4x
MIN_SEEDS = 3                    # every claim sweep repeats each configuration over this many seeds
SEED = "train.seed"
BUDGET = "train.steps"
REPEATS = (SEED, BUDGET)         # swept keys that are not conditions: repeats and the budget


@dataclass(frozen=True)
class Claim:
    id: str
    quote: str                 # the documents' wording, shortened
    source: str                # which document and section, or the issues / paper where people report it
    sweep: str                 # sweeps/<sweep>.yaml
    factor: str                # the swept key the claim is about
    control: tuple[str, ...]   # levels without the blamed cause / the recommended remedy
    treatment: tuple[str, ...]  # levels with it, as the documents name them
    effect: str                # "raises" or "lowers" the fraction of inf/NaN runs
    probe: str | None = None   # an op-level probe that also bears on the claim
    beside: tuple[str, ...] = ()  # other levels of the factor: judged apart, not pooled into the verdict
    note: str = ""             # why the levels are what they are, when that needs saying


CLAIMS: tuple[Claim, ...] = (
    Claim("outliers", '"Extreme values in the input features or target variables can easily lead to '
          'numerical overflow ... resulting in NaN loss"', "doc000 §1, doc003 §1", "claim_outliers",
          "dataset", ("clean",), ("outliers",), "raises"),
    Claim("scaling", '"Robust scaling techniques like standardization (z-score normalization) or min-max '
          'scaling should be applied" / "is crucial to prevent these issues"', "doc000 §1, doc003 §1",
          "claim_scaling", "preprocess", ("none",), ("standard", "minmax"), "lowers", beside=("robust",),
          note="the documents name standardization and min-max scaling; RobustScaler is reported beside"),
    Claim("learning_rate", '"A learning rate that\'s too high can contribute to gradient explosion ... '
          'Even with well-scaled data"', "doc000 §2, doc003 §2", "claim_learning_rate",
          "optimizer.lr", ("0.001",), ("1.0", "10.0"), "raises", beside=("0.01", "0.1")),
    Claim("clipping", '"implement gradient clipping ... This prevents the weight updates from becoming '
          'excessively large"', "doc000 §2, doc003 §3", "claim_clipping", "clipping", ("none",),
          ("clipnorm",), "lowers", probe="clipping", beside=("global_clipnorm", "clipvalue"),
          note="both documents' code clips with clipnorm; global_clipnorm and clipvalue are reported beside"),
    Claim("adaptive_optimizers", '"Experiment with adaptive learning rate optimizers like Adam or RMSprop" / '
          '"Adam ... is generally more robust than simple gradient descent"', "doc000 §2, doc003 §3",
          "claim_optimizer", "optimizer", ("sgd",), ("adam", "rmsprop"), "lowers"),
    Claim("huber", '"using mean squared error with data containing significant outliers can potentially lead '
          'to NaN values" / Huber "less sensitive to outliers"', "doc003 §3 and example 3", "claim_loss",
          "loss", ("mse",), ("huber",), "lowers", beside=("mae",)),
    Claim("relu_negative", '"using a ReLU activation in a layer that might receive significantly negative '
          'inputs can cause vanishing gradients or even produce NaN values"', "doc003 §2", "claim_relu",
          "model.activation", ("tanh", "linear"), ("relu",), "raises", probe="relu"),
    Claim("nan_inputs", '"NaNs in the input data will almost certainly propagate through the model, leading '
          'to NaN outputs"', "doc003 §1", "claim_nan_inputs", "dataset.nan_fraction", ("0.0",),
          ("0.01", "0.1"), "raises"),
    Claim("complexity_depth", '"an overly complex model with a large number of layers and neurons can lead '
          'to ... unstable training dynamics, which can manifest as NaN outputs" (layers)', "doc003 §2",
          "claim_complexity", "model.depth", ("1",), ("8",), "raises"),
    Claim("complexity_width", '(same sentence, neurons per layer)', "doc003 §2", "claim_complexity",
          "model.width", ("16",), ("256",), "raises"),
    Claim("dropout", '"Regularization techniques like dropout and weight decay help alleviate this" '
          '(dropout)', "doc003 §2", "claim_regularization", "model.dropout", ("0.0",), ("0.5",), "lowers"),
    Claim("weight_decay", '(same sentence, weight decay)', "doc003 §2", "claim_regularization",
          "model.weight_decay", ("0.0",), ("0.01",), "lowers"),
    Claim("sigmoid_overflow", '"extreme outliers ... can lead to numerical overflow during calculations within '
          'the activation functions (like sigmoid or softmax)"', "doc003 §1", "claim_sigmoid",
          "model.activation", ("tanh", "linear"), ("sigmoid",), "raises", probe="sigmoid_softmax"),
)

# The causes of NaN that people report (issue 21), judged by the same rules: each source is a real
# issue thread or paper where it is reported. Their sweeps hold the new factors (classification sets,
# hand-written losses and normalization, sequences, mixed precision).
ISSUE_CLAIMS: tuple[Claim, ...] = (
    Claim("log_loss_naive", '"a hand-written log loss produces NaN where Keras\'s cross-entropy does not"',
          "https://github.com/keras-team/keras/issues/5733, https://github.com/tensorflow/models/pull/181",
          "claim_log_loss", "loss", ("crossentropy",), ("log_loss_naive",), "raises",
          note="log_loss_naive is -mean(sum(y * log(p))) on the sigmoid / softmax output, nothing clipped"),
    Claim("from_logits", '"from_logits=True is more stable than softmax + cross-entropy"',
          "https://github.com/keras-team/keras/issues/6338, https://github.com/tensorflow/hub/pull/593",
          "claim_from_logits", "probability", ("stable", "naive"), ("logits",), "lowers", beside=("keras",),
          note="the control computes the sigmoid / softmax by hand after a linear output (a Lambda layer's "
               "keras.ops, stable and naive forms), so the loss sees probabilities only; Keras's own "
               "Dense(activation=sigmoid / softmax) is beside: Keras 3 takes its loss from the logits it keeps "
               "on that output (_keras_logits)"),
    Claim("zero_std", '"dividing by a zero standard deviation produces NaN"',
          "https://github.com/fastai/fastai/issues/889, https://github.com/mllam/neural-lam/issues/136",
          "claim_zero_std", "preprocess", ("standard",), ("manual_standard",), "raises",
          note="manual_standard is (x - mean) / std with no epsilon; StandardScaler leaves a constant column at 0"),
    Claim("rmse_perfect_fit", '"sqrt in a loss produces NaN when the fit is perfect"',
          "https://github.com/keras-team/keras/issues/1172, https://github.com/keras-team/keras/issues/6644",
          "claim_rmse", "loss", ("mse",), ("rmse",), "raises", probe="sqrt",
          note="the probe evaluates sqrt(mse)'s gradient where the fit is exact; training must reach mse = 0 "
               "in float32 for the runs to show it"),
    Claim("lstm_clipping", '"gradient clipping prevents exploding gradients in LSTMs"',
          "Pascanu, Mikolov & Bengio 2013 (arXiv:1211.5063), https://github.com/keras-team/keras/issues/5127",
          "claim_lstm_clipping", "clipping", ("none",), ("global_clipnorm",), "lowers", beside=("clipnorm",),
          note="global_clipnorm is Pascanu et al.'s rescaling of the whole gradient; clipnorm is reported beside"),
    Claim("mixed_precision", '"mixed precision overflows where float32 does not"',
          "https://github.com/tensorflow/tensorflow/issues/56142, Micikevicius et al. 2018 (arXiv:1710.03740)",
          "claim_mixed_precision", "train.precision", ("float32",), ("mixed_float16",), "raises",
          note="mixed_float16 is Keras's policy: float16 layers, a float32 output layer and loss, dynamic loss "
               "scaling (its skipped updates are each run's skipped_steps)"),
)
CLAIMS = CLAIMS + ISSUE_CLAIMS
