"""Attribution: which factors and levels make a run non-finite.

The rules of a shallow decision tree (only its leaves that predict non-finite) and a random
forest's impurity importance summed back from one-hot columns to factors. Fitted on the runs
the caller hands over: the summary passes the runs its explained causes left (see
nanbench.summary.findings), so a cause that explains itself does not crowd out the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nanbench.summary.analysis import fmt, main_effects, outcome_flags


@dataclass(frozen=True)
class Condition:
    factor: str
    op: str     # '=', '!=', 'in', 'not in', '>=', '<=', 'between'
    value: object

    @property
    def text(self) -> str:
        v = self.value
        if self.op == "between":
            return f"{fmt(v[0])} <= {self.factor} <= {fmt(v[1])}"
        if self.op in ("in", "not in"):
            return f"{self.factor} {self.op} {{{', '.join(fmt(x) for x in v)}}}"
        if self.op in ("=", "!="):
            return f"{self.factor}{self.op}{fmt(v)}"
        return f"{self.factor} {self.op} {fmt(v)}"


@dataclass(frozen=True)
class Rule:
    conditions: tuple[Condition, ...]
    runs: int        # support: runs in the leaf
    nonfinite: int   # of which non-finite

    @property
    def purity(self) -> float:
        return self.nonfinite / self.runs

    @property
    def predicts_nonfinite(self) -> bool:
        return self.nonfinite * 2 > self.runs

    @property
    def text(self) -> str:
        lhs = " AND ".join(c.text for c in self.conditions) or "(all runs)"
        return f"{lhs} → non-finite {self.nonfinite}/{self.runs}"


@dataclass
class Attribution:
    rules: list[Rule]             # leaves predicting non-finite (most runs non-finite), most first
    importance: pd.DataFrame      # factor, importance (sums to 1), spread, rank
    runs: int                     # runs used (trained)
    nonfinite: int
    depth: int
    notes: list[str] = field(default_factory=list)


def design_matrix(runs: pd.DataFrame, varying: list[str]) -> tuple[np.ndarray, list[tuple[str, object]]]:
    """Numeric factors as they are; categorical ones one-hot. Each column is (factor, level),
    level None for a numeric column."""
    blocks, columns = [], []
    for f in varying:
        values = runs[f]
        if not pd.api.types.is_numeric_dtype(values.dtype):
            cat = pd.Categorical(values)
            present = [c for c in cat.categories if (cat == c).any()]
            blocks.append(np.stack([(np.asarray(cat) == c) for c in present], axis=1).astype(float))
            columns += [(f, c) for c in present]
        else:
            blocks.append(values.to_numpy(dtype=float)[:, None])
            columns.append((f, None))
    return np.hstack(blocks), columns


def _leaf_conditions(path: list[tuple[int, float, bool]], columns, X: np.ndarray,
                     levels: dict) -> tuple[Condition, ...]:
    """Turn a root-to-leaf path of (feature, threshold, went_right) into conditions on
    observed levels: `lr > 0.055` reads `optimizer.lr >= 0.1`, one-hot splits read `name=sgd`."""
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    equal: dict[str, object] = {}
    excluded: dict[str, set] = {}
    order: list[str] = []
    for (feature, threshold, right) in path:
        f, level = columns[feature]
        if f not in order:
            order.append(f)
        if level is None:
            observed = np.unique(X[:, feature])
            if right:
                lower[f] = max(lower.get(f, -np.inf), float(observed[observed > threshold].min()))
            else:
                upper[f] = min(upper.get(f, np.inf), float(observed[observed <= threshold].max()))
        elif right:
            equal[f] = level
        else:
            excluded.setdefault(f, set()).add(level)
    out = []
    for f in order:
        if f in lower or f in upper:
            lo, hi = lower.get(f), upper.get(f)
            if lo is not None and hi is not None:
                out.append(Condition(f, "=", lo) if lo == hi else Condition(f, "between", (lo, hi)))
            elif lo is not None:
                out.append(Condition(f, ">=", lo))
            else:
                out.append(Condition(f, "<=", hi))
            continue
        if f in equal:
            out.append(Condition(f, "=", equal[f]))
            continue
        allowed = [lv for lv in levels[f] if lv not in excluded[f]]
        gone = [lv for lv in levels[f] if lv in excluded[f]]
        if len(allowed) == 1:
            out.append(Condition(f, "=", allowed[0]))
        elif len(gone) == 1:
            out.append(Condition(f, "!=", gone[0]))
        elif len(gone) <= len(allowed):
            out.append(Condition(f, "not in", tuple(gone)))
        else:
            out.append(Condition(f, "in", tuple(allowed)))
    return tuple(out)


def attribution(runs: pd.DataFrame, varying: list[str], flags: pd.DataFrame | None = None,
                effects: pd.DataFrame | None = None, max_depth: int = 4, n_trees: int = 60,
                seed: int = 0) -> Attribution:
    """Rules of a shallow decision tree predicting non-finite from the varying factors, and a
    random forest's impurity importance summed back from one-hot columns to factors.

    Both are fitted on every run that ran (outcome error excluded), the non-finite ones included: that is the signal.
    (Optuna's importance evaluators read only completed trials, and a NaN objective fails a trial.)
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    flags = outcome_flags(runs) if flags is None else flags
    trained = flags["ran"].to_numpy(bool)
    data = runs.loc[trained]
    y = flags.loc[trained, "nonfinite"].to_numpy()
    notes = []
    if (~trained).any():
        notes.append(f"{int((~trained).sum())} runs with outcome error left out (they did not run).")
    empty = pd.DataFrame(columns=["factor", "importance", "spread", "rank"])
    if not varying or len(y) == 0 or y.min() == y.max():
        what = "no factor varies" if not varying else (
            "no run turned non-finite" if len(y) == 0 or y.max() == 0 else "every run turned non-finite")
        return Attribution([], empty, len(y), int(y.sum()), 0, notes + [f"Nothing to attribute: {what}."])
    X, columns = design_matrix(data, varying)
    min_leaf = max(1, len(y) // 500)
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_leaf, random_state=seed)
    tree.fit(X, y)
    t = tree.tree_
    leaves = tree.apply(X)
    positives = pd.Series(y).groupby(leaves).agg(["sum", "size"])
    levels = {f: [lv for (g, lv) in columns if g == f] for f in varying}
    rules = []

    def walk(node: int, path: list) -> None:
        if t.children_left[node] == -1:
            k, n = positives.loc[node]
            if k * 2 > n:  # a leaf predicting finite is no rule for non-finite runs
                rules.append(Rule(_leaf_conditions(path, columns, X, levels), int(n), int(k)))
            return
        feat, thr = int(t.feature[node]), float(t.threshold[node])
        walk(int(t.children_left[node]), path + [(feat, thr, False)])
        walk(int(t.children_right[node]), path + [(feat, thr, True)])

    walk(0, [])
    rules.sort(key=lambda r: (-r.nonfinite, -r.purity))

    forest = RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=min_leaf, max_depth=8,
                                    random_state=seed, n_jobs=1)
    forest.fit(X, y)
    per_factor = pd.Series(forest.feature_importances_, index=[f for f, _ in columns]).groupby(level=0).sum()
    per_factor = per_factor.reindex(varying).fillna(0.0)  # a factor the forest never split on: 0 importance
    if effects is None:  # rates are over runs that ran: the same with or without the errors
        effects = main_effects(data, varying, flags.loc[trained])
    spread = effects.groupby("factor")["rate"].agg(lambda r: r.max() - r.min()).reindex(varying)
    importance = pd.DataFrame({"factor": varying, "importance": per_factor.to_numpy() / max(per_factor.sum(), 1e-12),
                               "spread": spread.to_numpy()})
    importance = importance.sort_values(["importance", "spread"], ascending=False, ignore_index=True)
    importance["rank"] = np.arange(1, len(importance) + 1)
    return Attribution(rules, importance, len(y), int(y.sum()), int(tree.get_depth()), notes)


