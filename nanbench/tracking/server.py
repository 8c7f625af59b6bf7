"""A sweep's store served to its joblib workers over a local socket (:class:`StoreServer`), and
a worker's side of it (:class:`RemoteStore`): one process writes the store, no worker imports
MLflow. The socket is in a folder only this user can open, each connection is authenticated
with a random key, and requests go through the restricted unpickler (nanbench.tracking.protocol)."""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time

from nanbench.tracking.protocol import Connection, serve

class StoreServer:
    """This process's store, opened to this machine's other processes over a local socket.

    joblib's workers send their runs here (:class:`RemoteStore`) rather than each importing
    MLflow and opening the store (seconds of a core per worker), and one process writes the
    store (SQLite takes one writer at a time). Each connection is authenticated and served by
    :func:`serve` on a thread of its own, one at a time at the store, so a caller that connects
    and hangs up (or never answers the handshake) costs only its own thread: the server keeps
    accepting. The socket is in a folder only this user can open (checked), a connection must
    also prove it has the key (``address`` gives both; the sweep writes it to a 0600 file), and
    a connection may only send runs and ask for the functions in `calls`, never one of its own."""

    def __init__(self, tracking, calls=()):
        import tempfile
        from multiprocessing.connection import Listener

        self.tracking, self.key, self.calls = tracking, os.urandom(16), frozenset(calls)
        self.folder = tempfile.mkdtemp(prefix="nanbench-store-")  # 0700, this user's
        info = os.stat(self.folder)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise RuntimeError(f"{self.folder}: not private to this user; the store is not served")
        # no authkey here: the handshake runs on each connection's thread (see _handshake)
        self.listener = Listener(os.path.join(self.folder, "store.sock"), family="AF_UNIX")
        self.address = {"address": self.listener.address, "key": self.key.hex()}  # RemoteStore(**address)
        self.lock = threading.Lock()
        self.closed = False
        self.threads: list[threading.Thread] = []  # one per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn = self.listener.accept()
            except Exception:  # noqa: BLE001 - closed (then the loop ends), or one failed connect
                if self.closed:
                    return
                time.sleep(0.01)
                continue
            thread = threading.Thread(target=self._handshake, args=(conn,), daemon=True)
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
            thread.start()

    def _handshake(self, conn) -> None:
        from multiprocessing.connection import answer_challenge, deliver_challenge
        try:
            deliver_challenge(conn, self.key)
            answer_challenge(conn, self.key)
        except Exception:  # noqa: BLE001 - a caller without the key, or one that hung up: refused
            conn.close()
            return
        serve(conn, self.tracking, self.lock, calls=self.calls)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every connection has been served to its end (its runs written): after its
        workers are gone, what they sent is in the store. Returns whether all ended in time."""
        deadline = time.time() + timeout
        for thread in list(self.threads):
            thread.join(max(0.0, deadline - time.time()))
        return not any(t.is_alive() for t in self.threads)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


class RemoteStore(Connection):
    """A :class:`StoreServer` of another process on this machine, as this process's store."""

    def __init__(self, address: str, key: str):
        from multiprocessing.connection import Client

        self.address, self.owner = address, os.getpid()
        self.conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(key))

    def close(self) -> None:
        self._hang_up()
