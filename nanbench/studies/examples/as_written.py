"""The document's code block itself, verbatim, executed with ``exec`` in a fresh namespace in a
separate Python process (the installed TensorFlow/Keras, seeded with
``keras.utils.set_random_seed(0)``, op determinism on, progress output swallowed).

What it did is recorded: ``ran``, or the exact exception, plus every warning. When it stops on a
name the document never defines (``X_train``, ``y_train``), it is executed once more with those
names given the stand-in data, which shows the next thing that breaks. The same process then
trains every example inside nanbench at the other seeds, while the calling process does other
work (the claims' sweeps): two cores, one job each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from nanbench.studies.documents import SEED, make_data
from nanbench.studies.examples.definitions import BY_KEY, EXAMPLES
from nanbench.studies.examples.in_nanbench import run_seeds
from nanbench.studies.examples.records import AsWritten, SeedRun, distinct

BLOCK_TIMEOUT_S = 180        # an as-written block still running after this is recorded as a timeout


def _exec_block(code: str, name: str, given: dict, epochs_cap: int | None, timeout_s: int) -> dict:
    """exec one code block in a fresh namespace; inside the worker process."""
    import contextlib
    import io
    import signal

    import keras

    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {timeout_s} s")

    original_fit = keras.Model.fit
    if epochs_cap is not None:  # only for shortened test runs: the code text stays as written
        def fit(self, *args, **kwargs):
            if kwargs.get("epochs", 1) > epochs_cap:
                kwargs["epochs"] = epochs_cap
            return original_fit(self, *args, **kwargs)
        keras.Model.fit = fit
    namespace: dict[str, Any] = {"__name__": "__main__", **given}
    keras.utils.set_random_seed(SEED)
    t0 = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout_s)
    try:
        with warnings.catch_warnings(record=True) as records, contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("always")
            try:
                exec(compile(code, f"<{name}>", "exec"), namespace)  # noqa: S102 - the point
                status = "ran"
            except Exception as exc:  # noqa: BLE001 - the exact error is the record
                status = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        keras.Model.fit = original_fit
    model = namespace.get("model")
    history = getattr(model, "history", None)
    losses = [float(v) for v in getattr(history, "history", {}).get("loss", [])]
    return {"status": status, "warnings": distinct(f"{w.category.__name__}: {w.message}" for w in records),
            "losses": losses, "seconds": time.perf_counter() - t0}


def as_written_worker(keys: list[str], epochs_cap: int | None, timeout_s: int, out: str,
                       seed_keys: list[str] = (), seeds: list[int] = ()) -> None:
    """Entry point of the worker process: each block in a fresh namespace, then each example of
    `seed_keys` in nanbench at each of `seeds` (run_seeds); results as JSON, written after each part."""
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    tf.config.experimental.enable_op_determinism()
    results = {}
    for key in keys:
        ex = BY_KEY[key]
        rec = _exec_block(ex.code, key, {}, epochs_cap, timeout_s)
        if rec["status"].startswith("NameError") and ex.names:
            X, y = make_data(ex.data)
            again = _exec_block(ex.code, key, dict(zip(ex.names, (X, y))), epochs_cap, timeout_s)
            rec["with_data"], rec["with_data_losses"] = again["status"], again["losses"]
            rec["warnings"] = distinct(rec["warnings"] + again["warnings"])
        results[key] = rec
    Path(out).write_text(json.dumps({"as_written": results, "seeds": {}}, allow_nan=True))
    if seed_keys and seeds:
        runs = run_seeds(list(seed_keys), list(seeds), epochs_cap=epochs_cap)
        Path(out).write_text(json.dumps({"as_written": results, "seeds": runs}, allow_nan=True))


class AsWrittenProcess:
    """The worker process that executes the code blocks and then trains the examples' other seeds;
    started at once, read with results(), so that the caller can do other work (the claims'
    sweeps) while it runs."""

    def __init__(self, examples=EXAMPLES, *, epochs_cap: int | None = None, timeout_s: int = BLOCK_TIMEOUT_S,
                 seed_examples=(), seeds=()):
        self.keys = [e.key for e in examples if e.code is not None]
        self.seed_keys = [e.key for e in seed_examples]
        self.seeds = list(seeds)
        # a guard against a hung process only: every block its limit twice, a minute per seed run
        self.timeout = timeout_s * 2 * len(self.keys) + 60 * len(self.seed_keys) * len(self.seeds) + 120
        self._tmp = tempfile.TemporaryDirectory()
        self.out = Path(self._tmp.name) / "as_written.json"
        call = ("from nanbench.studies.examples.as_written import as_written_worker as w; "
                f"w({self.keys!r}, {epochs_cap!r}, {timeout_s!r}, {str(self.out)!r}, {self.seed_keys!r}, {self.seeds!r})")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen([sys.executable, "-c", call], cwd=self._tmp.name, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def results(self) -> tuple[dict[str, AsWritten], dict[str, list[SeedRun]]]:
        """The as-written records, and each example's SeedRuns at the other seeds ({} where the
        process did not get to them)."""
        try:
            _, stderr = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
        try:
            if not self.out.exists():
                tail = (stderr or "").strip().splitlines()[-1:] or ["no output"]
                return {k: AsWritten(status=f"worker failed (exit {self.proc.returncode}): {tail[0]}")
                        for k in self.keys}, {}
            raw = json.loads(self.out.read_text())
        finally:
            self._tmp.cleanup()
        written = {k: AsWritten(**v) for k, v in raw["as_written"].items()}
        written.update({k: AsWritten(status="TimeoutError: the as-written process did not finish")
                        for k in self.keys if k not in written})
        return written, {k: [SeedRun(**r) for r in v] for k, v in raw["seeds"].items()}

