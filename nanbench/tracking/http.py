"""An MLflow server as a store: its requests retried a bounded number of times, each retry said
on stderr as it happens, and a server that stopped answering given up on within a minute.

MLflow's own client retries a failed request 7 times with exponential backoff and a 120 s
timeout per attempt, silently: a server stopped mid-sweep cost minutes per request, and a
sweep's end makes several (measured: 12.3 minutes of silence before the one line). Here its
retries are off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` unless the user set it) and
:class:`RetryingClient` retries instead, ATTEMPTS times in all with a short, growing pause; a
server that fails them all is marked gone for this process, so the requests after it fail at
once with the same reason instead of each waiting again. A stopped server (connection refused)
is given up on in about 15 s; one that accepts connections and never answers, in ATTEMPTS
timeouts.
"""

from __future__ import annotations

import os
import sys
import time

ATTEMPTS = 4                 # tries per request, the first included
PAUSES_S = (2, 4, 8)         # between them: 14 s in all, plus the attempts themselves
TIMEOUT_S = 30               # per attempt (MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT; its default is 120)
# what a server that is down, restarting or overloaded answers (or fails to): worth a retry
TRANSIENT = ("max retries exceeded", "connection refused", "connection aborted", "connection reset",
             "timed out", "remotedisconnected", "too many 50", "error code 50", "bad gateway",
             "service unavailable", "failed to establish a new connection")


class StoreUnreachable(RuntimeError):
    """The MLflow server did not answer ATTEMPTS tries (the message says which and why)."""


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def bound_mlflow_retries() -> None:
    """MLflow's silent retries off and its timeout short, unless the user set them."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TIMEOUT_S))


def transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in TRANSIENT)


def short(exc: BaseException) -> str:
    """The cause in a few words (MLflow's messages repeat the whole URL and urllib3's chain)."""
    text = " ".join(str(exc).split())
    for marker in ("Connection refused", "Read timed out", "timed out", "Connection reset", "Connection aborted",
                   "RemoteDisconnected", "Bad Gateway", "Service Unavailable"):
        if marker.lower() in text.lower():
            return marker
    return text[:160]


class RetryingClient:
    """An MlflowClient whose every method is tried ATTEMPTS times on a transient failure."""

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri
        self._gone: str | None = None  # why the server was given up on, once it was

    def __getattr__(self, name: str):
        value = getattr(self._client, name)
        if not callable(value) or name.startswith("_"):
            return value

        def call(*args, **kwargs):
            return self._call(name, value, args, kwargs)
        return call

    def _call(self, name, fn, args, kwargs):
        if self._gone:
            raise StoreUnreachable(self._gone)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - retried when transient, else raised as is
                if not transient(exc):
                    raise
                if attempt == ATTEMPTS:
                    self._gone = (f"the MLflow server {self._uri} stopped answering ({short(exc)}, "
                                  f"{ATTEMPTS} tries)")
                    raise StoreUnreachable(self._gone) from None
                pause = PAUSES_S[min(attempt, len(PAUSES_S)) - 1]
                print(f"nanbench: warning: the MLflow server {self._uri} did not answer {name} ({short(exc)}); "
                      f"try {attempt + 1} of {ATTEMPTS} in {pause} s", file=sys.stderr, flush=True)
                time.sleep(pause)
