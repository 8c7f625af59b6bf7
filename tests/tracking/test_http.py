"""nanbench.tracking.http: an MLflow server's requests retried a bounded number of times, each
retry said on stderr, and a server given up on failing every later request at once."""

from __future__ import annotations

import socket

import pytest

from nanbench.tracking import http


def test_what_is_retried():
    assert http.transient(OSError("HTTPConnectionPool: Max retries exceeded ... [Errno 111] Connection refused"))
    assert http.transient(OSError("API request failed with error code 503 != 200"))
    assert not http.transient(ValueError("RESOURCE_DOES_NOT_EXIST: run 'abc503def' not found"))
    assert http.short(OSError("... Failed to establish a new connection: [Errno 111] Connection refused")) == \
        "Connection refused"


def test_a_server_that_does_not_answer_is_given_up_on_after_its_tries(monkeypatch, capsys):
    """A real MlflowClient at a loopback port nothing listens on: ATTEMPTS tries, a warning per
    retry, then StoreUnreachable; the next request fails at once, with no new try."""
    from mlflow.tracking import MlflowClient

    with socket.socket() as probe:  # a port free now, so refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(http, "PAUSES_S", (0, 0, 0))
    uri = f"http://127.0.0.1:{port}"
    client = http.RetryingClient(MlflowClient(tracking_uri=uri), uri)
    with pytest.raises(http.StoreUnreachable, match="stopped answering .Connection refused, 4 tries"):
        client.get_experiment_by_name("x")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nanbench: warning")]
    assert len(warnings) == http.ATTEMPTS - 1 and "try 2 of 4" in warnings[0]
    with pytest.raises(http.StoreUnreachable):
        client.search_experiments()
    assert capsys.readouterr().err == ""
