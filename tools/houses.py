"""The worked example of docs/your-model.md: write houses.csv and houses.keras into a folder.

    python -m tools.houses results/diagnose/houses

The same lines as docs/your-model.md's `make_files.py`, so `make diagnose-example` diagnoses exactly the
files a reader writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # --- docs/your-model.md's make_files.py, as written there ---
    import keras
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1000, size=(512, 4))                       # raw features, in the hundreds
    price = X @ [30.0, -10.0, 5.0, 20.0] + 400_000 + rng.normal(0, 100, 512)
    pd.DataFrame({"rooms": X[:, 0], "age": X[:, 1], "floor": X[:, 2], "area": X[:, 3],
                  "price": price}).to_csv("houses.csv", index=False)
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(32, activation="relu"),
                      keras.layers.Dense(1)]).save("houses.keras")


if __name__ == "__main__":
    main()
