"""nanbench.tracking.uri: the store URIs nanbench refuses before anything is recorded."""

from __future__ import annotations

import pytest

from nanbench.spec import ConfigError
from nanbench.tracking import check_uri


@pytest.mark.parametrize("tail,why", [("q.db?mode=ro", "query"), ("q.db#frag", "query"),
                                      (":memory:", "in-memory")])
def test_a_query_or_an_in_memory_sqlite_store_is_refused_and_nothing_is_created(tmp_path, monkeypatch, tail, why):
    """MLflow reads ``?mode=ro`` and ``:memory:`` (a file q.db, a database lost with the process)
    where nanbench's checks would make a file of that literal name: refused in one line."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tail}" if tail == ":memory:" else f"sqlite:///{tmp_path / tail}"
    with pytest.raises(ConfigError, match=why) as caught:
        check_uri(uri)
    assert str(caught.value).startswith("tracking.uri must be") and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_relative_store_path_that_leaves_the_current_directory_creates_no_folder(tmp_path, monkeypatch):
    """Folders are created only under the current directory: ``sqlite:///../x/m.db`` is refused."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ConfigError, match="does not exist"):
        check_uri("sqlite:///../rel_escape/m.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    check_uri("sqlite:///sub/../inside/m.db")  # ".." that stays inside is a folder under it
    assert (work / "inside").is_dir()
