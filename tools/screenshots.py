"""Screenshots of the MLflow UI and the HTML report, taken in a real browser that checks each page.

    python -m tools.screenshots --out results/screenshots [--workdir DIR] [--port N]

runs the smoke sweep into a temporary store (never the project's results/mlflow.db), serves it with
``mlflow ui`` on a free port of 127.0.0.1, and drives the system's Chromium headless through
Playwright (Debian's ``chromium`` package; Playwright's own browser downloads are never used) along
what a user does: find the sweep among the experiments, open its parent run and the summary
artifacts, open a NaN or inf run and its loss and gradient-norm charts, filter the runs by outcome
and optimizer, and open the offline HTML report. Every step waits on page content (never on a fixed
delay), checks what the page shows against the store (read with MlflowClient), and writes one PNG;
``index.md`` in the output folder lists them. The server is shut down whatever happens.

tests/tools/test_screenshots.py runs the same steps (:data:`STEPS`) against a sweep of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tools.browser import (BENIGN_HTTP, ERROR_TEXT, SWEEP, TIMEOUT_MS, UI_PREFERENCES, VIEWPORT, Expected, TourError, chromium, expected_from_store, missing_requirements, mlflow_ui, run_smoke_sweep)


# ---------------------------------------------------------------------------------------------
# The data: a smoke sweep in a temporary store, and what the UI should show of it


# ---------------------------------------------------------------------------------------------
# The server


# ---------------------------------------------------------------------------------------------
# The browser and the steps


@dataclass
class Step:
    name: str                       # the PNG's stem
    caption: str
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Tour:
    """One browser for every step; each step opens a fresh context (no state carried over)."""
    browser: object
    base: str
    expected: Expected
    report: Path
    out: Path
    page: object = None
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self, url: str):
        """A fresh context and page, recording uncaught page errors and failed server requests."""
        if self.page is not None:
            self.page.context.close()
        context = self.browser.new_context(viewport=VIEWPORT)
        context.add_init_script(UI_PREFERENCES)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        self.errors, self.requests = [], []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught error in the page: {exc}"))
        page.on("response", lambda r: self.errors.append(f"HTTP {r.status} from {r.url}")
                if r.status >= 400 and r.url.startswith(self.base)
                and not r.url.split("?")[0].endswith(BENIGN_HTTP) else None)
        page.goto(url)
        self.page = page
        return page

    def ui(self, route: str):
        return self.open(f"{self.base}/#/{route.lstrip('/')}")

    def no_error_shown(self, step: Step) -> None:
        shown = ERROR_TEXT.search(self.page.inner_text("body"))
        if shown:
            raise TourError(f"the page shows an error: {shown.group(0)!r}")
        if self.errors:
            raise TourError("; ".join(self.errors[:5]))
        step.checks.append("no error on the page (no error text, no uncaught exception, no failed request)")

    def shot(self, step: Step, full_page: bool = False) -> Path:
        path = self.out / f"{step.name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def _expect():
    """Playwright's expect, retrying for TIMEOUT_MS (its own default is 5 s, not the context's)."""
    from playwright.sync_api import expect
    expect.set_options(timeout=TIMEOUT_MS)
    return expect


def _expand_parent(page, parent_name: str) -> None:
    """Click the +/- button of the parent's row, which shows its child runs nested under it."""
    parent_link = page.get_by_role("link", name=parent_name, exact=True)
    parent_link.wait_for()
    page.get_by_role("row").filter(has=parent_link).get_by_role("button").first.click()


def _widen_run_names(page) -> None:
    """Fit the Run Name column to its content (ag-grid: double-click the header's resize handle),
    so that screenshots show whole run names."""
    handle = page.locator('.ag-header-cell[col-id="attributes.`Run Name`"] .ag-header-cell-resize')
    if handle.count():
        handle.first.dblclick()


# The runs table's columns for screenshots: the outcome and a factor beside each name, not MLflow's
# Dataset/Source/Models (empty for nanbench's runs). Names of the column selector's entries.
COLUMNS_TOGGLED = ("Dataset", "Source", "Models", "outcome", "optimizer.name", "first_nonfinite_step")


def _toggle_columns(page, names=COLUMNS_TOGGLED, timeout_ms: int = 10_000) -> bool:
    """Tick or untick columns in the runs table's Columns selector. Only what the screenshots show
    depends on it: False (and the default columns) when the selector is not as expected."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        for name in names:
            page.get_by_test_id("column-selection-dropdown").first.click(timeout=timeout_ms)
            page.get_by_placeholder("Search columns").fill(name, timeout=timeout_ms)
            # an entry's title is its name; the search highlights the matched part in <strong>
            page.locator(".du-bois-light-tree-title").filter(
                has_text=re.compile(f"^{re.escape(name)}$")).click(timeout=timeout_ms)
            page.keyboard.press("Escape")
        return True
    except PlaywrightTimeout:
        page.keyboard.press("Escape")
        return False


def step_experiments(t: Tour, step: Step) -> None:
    page = t.ui("/experiments")
    _expect()(page.get_by_role("link", name=t.expected.experiment, exact=True)).to_be_visible()
    step.checks.append(f"experiment `{t.expected.experiment}` is listed")
    t.no_error_shown(step)


def step_runs(t: Tour, step: Step) -> None:
    e = t.expected
    page = t.ui(f"/experiments/{e.experiment_id}/runs")
    _expand_parent(page, e.parent_name)
    expect = _expect()
    expect(page.get_by_role("link", name=e.bad_name, exact=True)).to_be_visible()
    # ag-grid renders the rows in view (and a few more): check the names of those it rendered
    links = page.locator('[role=row] a[href*="/runs/"]')
    expect(links).not_to_have_count(1)
    shown = {link.inner_text().strip() for link in links.all()} - {e.parent_name}
    unknown = shown - set(e.children.values())
    if unknown:
        raise TourError(f"rows under the parent that are not its children: {sorted(unknown)[:3]}")
    step.checks.append(f"parent run `{e.parent_name}` expands to its child runs ({len(shown)} of "
                       f"{len(e.children)} rendered, all its children, named like `{e.bad_name}`)")
    _toggle_columns(page)
    _widen_run_names(page)
    t.no_error_shown(step)


def step_parent(t: Tour, step: Step) -> None:
    e = t.expected
    page = t.ui(f"/experiments/{e.experiment_id}/runs/{e.parent_id}")
    expect = _expect()
    expect(page.get_by_role("heading", name=e.parent_name, exact=True)).to_be_visible()
    expect(page.locator('[role=status][title="nanbench.role"]')).to_contain_text(": parent")
    expect(page.get_by_text("Child runs", exact=True)).to_be_visible()
    any_child = page.locator(", ".join(f'a[href$="/runs/{run_id}"]' for run_id in e.children))
    expect(any_child.first).to_be_visible()  # the list of child runs has loaded
    expect(page.get_by_role("link", name=f"runs_{e.bad_outcome}", exact=True)).to_be_visible()
    step.checks.append(f"parent run `{e.parent_name}`: tag nanbench.role=parent, counts by outcome "
                       f"(runs_{e.bad_outcome}, ...) and its child runs listed")
    t.no_error_shown(step)


def step_parent_artifacts(t: Tour, step: Step) -> None:
    e = t.expected
    page = t.ui(f"/experiments/{e.experiment_id}/runs/{e.parent_id}/artifacts/summary/summary.html")
    expect = _expect()
    for path in e.summary_files:
        expect(page.get_by_text(path.rsplit("/", 1)[-1], exact=True)).to_be_visible()
    for needed in ("summary.html", "runs.csv", "main_effects.png"):
        if f"summary/{needed}" not in e.summary_files:
            raise TourError(f"summary/{needed} is not among the parent's artifacts: {e.summary_files}")
    # the report previewed inside MLflow (a sandboxed frame)
    report = page.frame_locator("iframe").first
    expect(report.get_by_role("heading", name=f"nanbench summary: {e.experiment}")).to_be_visible()
    step.checks.append(f"artifacts under summary/: {', '.join(p.rsplit('/', 1)[-1] for p in e.summary_files)}; "
                       "summary.html previews in the UI")
    t.no_error_shown(step)


def step_bad_run(t: Tour, step: Step) -> None:
    e = t.expected
    page = t.ui(f"/experiments/{e.experiment_id}/runs/{e.bad_id}")
    expect = _expect()
    expect(page.get_by_role("heading", name=e.bad_name, exact=True)).to_be_visible()
    expect(page.locator('[role=status][title="outcome"]')).to_contain_text(f": {e.bad_outcome}")
    for metric in (f"is_{e.bad_outcome}", "first_nonfinite_step", "loss", "grad_norm"):
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=metric, exact=True))
        expect(row).to_be_visible()
        if metric in ("first_nonfinite_step", f"is_{e.bad_outcome}"):
            expect(row.get_by_role("cell").last).to_have_text(f"{e.bad_metrics[metric]:g}")
        if re.search(r"\bNaN\b|\bInfinity\b", row.inner_text()):
            raise TourError(f"metric {metric} shows a non-finite value: {row.inner_text()!r}")
    step.checks.append(f"run `{e.bad_name}`: tag outcome={e.bad_outcome}, is_{e.bad_outcome}=1, "
                       f"first_nonfinite_step={e.bad_metrics['first_nonfinite_step']:g}, finite loss and grad_norm")
    t.no_error_shown(step)


def step_bad_charts(t: Tour, step: Step) -> None:
    e = t.expected
    page = t.ui(f"/experiments/{e.experiment_id}/runs/{e.bad_id}/model-metrics")
    expect = _expect()
    page.get_by_placeholder("Search metric charts").fill("^(loss|grad_norm)$")  # a regular expression
    for metric in ("loss", "grad_norm"):
        card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
            has=page.locator(f'h4[title="{metric}"]'))
        expect(card).to_have_count(1)
        expect(card.locator(".js-plotly-plot g.trace")).not_to_have_count(0)  # a plotted line
        if metric == "loss":
            expect(card.locator(".js-plotly-plot g.trace .point")).to_have_count(e.bad_loss_points)
    step.checks.append(f"loss and grad_norm charts plotted; the loss chart has the {e.bad_loss_points} finite "
                       f"epochs before the first non-finite step ({e.bad_metrics['first_nonfinite_step']:g})")
    t.no_error_shown(step)


def step_filter(t: Tour, step: Step) -> None:
    e = t.expected
    page = t.ui(f"/experiments/{e.experiment_id}/runs")
    page.get_by_role("link", name=e.parent_name, exact=True).wait_for()
    _toggle_columns(page)
    box = page.get_by_test_id("search-box")
    box.fill(e.filter)
    box.press("Enter")
    # matching children are nested under their parent, which the UI shows collapsed: expand it
    _expand_parent(page, e.parent_name)
    expect = _expect()
    children = page.locator(f'[role=row] a[href*="/runs/"]:not([href$="/runs/{e.parent_id}"])')
    expect(children).to_have_count(len(e.filtered))
    shown = sorted(link.inner_text().strip() for link in children.all())
    if shown != sorted(e.filtered.values()):
        raise TourError(f"the filter shows {shown}, MlflowClient finds {sorted(e.filtered.values())}")
    counter = page.get_by_text(re.compile(r"\d+\s*matching runs?"))
    count_text = counter.first.inner_text().strip() if counter.count() else "(no count shown)"
    step.checks.append(f"search `` {e.filter} ``: {len(shown)} child rows, as MlflowClient.search_runs finds "
                       f"(the UI's counter says '{count_text}': it counts the parent shown around them)")
    _widen_run_names(page)
    t.no_error_shown(step)


def step_report(t: Tour, step: Step) -> None:
    page = t.open(t.report.resolve().as_uri())
    expect = _expect()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"nanbench summary: {t.expected.experiment}")
    tables = page.locator("table")
    expect(tables).not_to_have_count(0)
    images = page.locator("img")
    expect(images).not_to_have_count(0)
    sources = images.evaluate_all("els => els.map(e => e.getAttribute('src') || '')")
    not_embedded = [s[:60] for s in sources if not s.startswith("data:image/")]
    if not_embedded:
        raise TourError(f"images not embedded as data: URIs: {not_embedded}")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    broken = images.evaluate_all("els => els.filter(e => !(e.naturalWidth > 0)).length")
    if broken:
        raise TourError(f"{broken} image(s) of the report do not decode")
    remote = [url for url in t.requests if not url.startswith(("file:", "data:"))]
    if remote:
        raise TourError(f"the report fetched from the network: {remote[:3]}")
    step.checks.append(f"offline HTML report: {tables.count()} tables, {len(sources)} images, all "
                       "embedded as data: URIs and decoded, no request beyond the file itself")
    t.no_error_shown(step)


def step_report_figure(t: Tour, step: Step) -> None:
    page = t.open(t.report.resolve().as_uri())
    figure = page.locator("img").first
    _expect()(figure).to_be_attached()
    figure.evaluate("img => img.scrollIntoView({block: 'center'})")
    _expect()(figure).to_be_in_viewport()
    step.checks.append("the report's first figure, scrolled into view")
    t.no_error_shown(step)


# (name, caption, function): the order a user follows; each step stands on its own
STEPS: list[tuple[str, str, Callable[[Tour, Step], None]]] = [
    ("01-experiments", "The experiments list: each sweep is an experiment (`smoke`).", step_experiments),
    ("02-runs", "The sweep's runs: the parent run `sweep smoke` with its training runs nested under it.",
     step_runs),
    ("03-parent-run", "The parent run: counts by outcome as metrics, the sweep's tags, its child runs.",
     step_parent),
    ("04-parent-artifacts", "The parent run's artifacts: the summary files under `summary/`, the HTML "
     "report previewed.", step_parent_artifacts),
    ("05-nonfinite-run", "A non-finite run: its name says what it is; tag `outcome`, forensic metrics.",
     step_bad_run),
    ("06-nonfinite-charts", "Its loss and gradient-norm charts (per epoch), up to the first non-finite "
     "step; charts filtered with `^(loss|grad_norm)$`.", step_bad_charts),
    ("07-filter", "Runs filtered in the search box by outcome and optimizer.", step_filter),
    ("08-report", "The HTML report (`make report`), opened from disk: tables, figures embedded.", step_report),
    ("09-report-figure", "The HTML report's first figure.", step_report_figure),
]


def run_step(tour: Tour, name: str, caption: str, fn: Callable[[Tour, Step], None]) -> Step:
    """Run one step and write its screenshot, also when a check fails (named in the error)."""
    step = Step(name, caption)
    t0 = time.perf_counter()
    try:
        fn(tour, step)
    except Exception as exc:
        where = ""
        if tour.page is not None:
            try:
                where = f" (screenshot: {tour.shot(Step(name + '-FAILED', caption))})"
            except Exception:  # noqa: BLE001 - the page itself may be gone
                pass
        raise TourError(f"step {name}: {exc}{where}") from exc
    tour.shot(step)
    step.seconds = round(time.perf_counter() - t0, 1)
    return step


def write_index(out: Path, steps: list[Step], versions: dict[str, str]) -> Path:
    lines = ["# Screenshots: the MLflow UI and the HTML report",
             "",
             "Made by `make screenshots` (`python -m tools.screenshots --out results/screenshots`): the "
             "smoke sweep in a temporary store, `mlflow ui` on 127.0.0.1, headless Chromium. Each step "
             "checked what the page shows against the store; the checks are listed under each picture.",
             "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
             ""]
    for step in steps:
        lines += [f"## {step.name}", "", step.caption, "", f"![{step.name}]({step.name}.png)", ""]
        lines += [f"- {check}" for check in step.checks] + [""]
    path = out / "index.md"
    path.write_text("\n".join(lines))
    return path


def take(store: str, report: Path, out: Path, *, port: int | None = None,
         log: Callable[[str], None] = lambda s: None) -> list[Step]:
    """Serve `store`, run every step in Chromium, write the PNGs and index.md into `out`."""
    import mlflow

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    expected = expected_from_store(store)
    steps = []
    with mlflow_ui(store, port) as base, chromium() as browser:
        log(f"mlflow ui on {base}; Chromium {browser.version}")
        tour = Tour(browser, base, expected, report, out)
        for name, caption, fn in STEPS:
            step = run_step(tour, name, caption, fn)
            log(f"{name}: {'; '.join(step.checks)} ({step.seconds} s)")
            steps.append(step)
        versions = {"MLflow": mlflow.__version__, "Chromium": browser.version}
    write_index(out, steps, versions)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.screenshots",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/screenshots"), help="folder for the PNGs")
    parser.add_argument("--workdir", type=Path,
                        help="keep the smoke sweep's store here (default: a temporary folder, removed)")
    parser.add_argument("--port", type=int, help="port of the MLflow UI on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    missing = missing_requirements()
    if missing:
        print("tools.screenshots: error: missing " + "; ".join(missing), file=sys.stderr, flush=True)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nanbench-screenshots-"))
    work.mkdir(parents=True, exist_ok=True)
    say = lambda s: print(s, flush=True)  # noqa: E731
    try:
        say(f"running the {SWEEP} sweep into {work} ...")
        store, report = run_smoke_sweep(work)
        steps = take(store, report, args.out, port=args.port, log=say)
    except (TourError, RuntimeError) as exc:
        print(f"tools.screenshots: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    say(json.dumps({"out": str(args.out), "screenshots": [f"{s.name}.png" for s in steps]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
