"""tools.screenshots: the smoke sweep's records in the MLflow UI and its HTML report, in real Chromium.

One smoke sweep into a temporary store, one `mlflow ui` on a free loopback port and one headless
Chromium serve every step of tools.screenshots.STEPS (experiments list, runs nested under the
parent, parent run and its summary artifacts, a NaN/inf run and its charts, the search box, the
offline report); each step waits on page content and checks it against MlflowClient. Screenshots
go to a temporary folder (`make screenshots` writes the committed ones).

Needs the playwright package (the dev extra) and Chromium (Debian's `chromium`): without them the
tests skip on a developer's machine and fail in CI (CI=true), where .ci/run installs Chromium.
"""

from __future__ import annotations

import os
import urllib.request

import pytest

from tools import browser, screenshots


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require_browser() -> None:
    missing = browser.missing_requirements()
    if not missing:
        return
    message = "the browser tests need " + "; ".join(missing)
    if _in_ci():
        pytest.fail(message + " (.ci/run installs Chromium in CI)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The smoke sweep in a temporary store: (store URI, summary.html, what the store holds)."""
    _require_browser()
    work = tmp_path_factory.mktemp("browser-store")
    store, report = browser.run_smoke_sweep(work)
    return store, report, browser.expected_from_store(store)


@pytest.fixture(scope="module")
def tour(swept, tmp_path_factory):
    """The MLflow UI over that store and a headless Chromium, both shut down whatever happens."""
    store, report, expected = swept
    out = tmp_path_factory.mktemp("screenshots")
    with browser.mlflow_ui(store) as base, browser.chromium() as chromium:
        t = screenshots.Tour(chromium, base, expected, report, out)
        try:
            yield t
        finally:
            if t.page is not None:
                t.page.context.close()


@pytest.mark.slow
@pytest.mark.parametrize("name, caption, fn", screenshots.STEPS, ids=[s[0] for s in screenshots.STEPS])
def test_step_shows_what_the_store_holds(tour, name, caption, fn):
    step = screenshots.run_step(tour, name, caption, fn)  # raises TourError naming what is missing
    assert step.checks and step.checks[-1].startswith("no error on the page")
    assert (tour.out / f"{name}.png").stat().st_size > 5_000


@pytest.mark.slow
def test_the_filter_is_the_readme_example_with_backticks(swept):
    _, _, expected = swept
    assert expected.filter.startswith(f"tags.outcome = '{expected.bad_outcome}' and params.`optimizer.name` = ")
    assert expected.filtered and all(name in expected.children.values() for name in expected.filtered.values())


@pytest.mark.slow
def test_the_server_stops_when_the_tour_fails(swept):
    store = swept[0]
    with pytest.raises(RuntimeError, match="a failing step"):
        with browser.mlflow_ui(store) as base:
            with urllib.request.urlopen(f"{base}/health", timeout=10) as reply:
                assert reply.status == 200
            raise RuntimeError("a failing step")
    with pytest.raises(OSError):  # nothing listens there any more
        urllib.request.urlopen(f"{base}/health", timeout=5)


def test_missing_chromium_is_named_with_its_install_line(monkeypatch, capsys):
    monkeypatch.setenv("NANBENCH_CHROMIUM", "/nonexistent/chromium")
    assert browser.find_chromium() is None
    assert any("apt-get install chromium" in m for m in browser.missing_requirements())
    assert screenshots.main(["--out", "/nonexistent/out"]) == 2
    assert "apt-get install chromium" in capsys.readouterr().err


@pytest.mark.slow
def test_the_experiment_links_make_ui_prints_open_on_the_training_runs_without_a_click(tour):
    """A browser that has never chosen MLflow's "Model training" layout (no local-storage
    preference; MLflow's UI then opens an experiment on its GenAI overview): the link `make ui`
    prints for an experiment shows its runs table at once."""
    from playwright.sync_api import expect

    from nanbench.tracking import ui_runs_url
    context = tour.browser.new_context(viewport=browser.VIEWPORT)  # without UI_PREFERENCES
    try:
        page = context.new_page()
        page.goto(ui_runs_url(tour.base, tour.expected.experiment_id))
        expect(page.get_by_role("link", name=tour.expected.parent_name, exact=True)).to_be_visible(
            timeout=browser.TIMEOUT_MS)
    finally:
        context.close()
