"""A sweep's progress: a live bar on a terminal (runs, and how many went nan / inf / error),
one plain line per job otherwise."""

from __future__ import annotations

import sys

_bar = None  # the live bar of this process (a terminal only)


def progress(total: int | None):
    global _bar
    if _bar is None and sys.stdout.isatty():
        from tqdm import tqdm
        _bar = tqdm(total=total, unit="run", dynamic_ncols=True, smoothing=0.05, file=sys.stdout)
        _bar.counts = {"nan": 0, "inf": 0, "error": 0}
    return _bar


def progress_close() -> None:
    global _bar
    if _bar is not None:
        _bar.close()
        _bar = None


def advance(bar, outcome: str | None) -> None:
    if bar is None:
        return
    if outcome in bar.counts:
        bar.counts[outcome] += 1
    bar.set_postfix_str(f"nan {bar.counts['nan']} inf {bar.counts['inf']} error {bar.counts['error']}",
                        refresh=False)
    bar.update(1)
