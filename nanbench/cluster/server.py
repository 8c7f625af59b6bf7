"""`make server` / `make server-stop`: an MLflow tracking server on PostgreSQL, in a project folder.

A sweep whose jobs run on several machines needs one store they all reach; an SQLite file on a
shared file system is not one (its locks do not hold over NFS). So the project starts its own:

- a PostgreSQL cluster in ``results/server/pg`` (``initdb`` once; its own port; listening on
  127.0.0.1 only; password authentication, the password in a 0600 file beside it). PostgreSQL
  refuses to run as root, so as root it runs as the ``postgres`` user, which owns that folder;
- ``mlflow server`` on 127.0.0.1 in front of it (``--backend-store-uri postgresql+psycopg://``:
  with SQLAlchemy 2.1 ``postgresql://`` means psycopg 3, the ``cluster`` extra's driver), which
  stores artifacts under ``results/server/artifacts`` and serves them to its clients, so a
  worker machine needs the server's URL and nothing else. The password reaches it in its
  environment (``PGPASSWORD``), never on a command line.

``start`` returns at once when the server is already up, ``stop`` stops both whether or not
``start`` completed, and a busy port or a missing PostgreSQL is one line and exit 2. The state
(ports, the server's pid, its start time and command line) is ``results/server/state.json``; a
pid is signalled only while it is still the process ``start`` started (after a reboot, or once
the server has ended, the pid may be anyone's): else the state is stale, said, and cleared.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from nanbench.cluster import group_alive, process_cmdline, process_start, stop_group

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDER = ROOT / "results" / "server"
DATABASE = ROLE = "mlflow"
START_TIMEOUT = 180.0


class ServerError(RuntimeError):
    """A server that cannot start here; the message is the one line the user reads."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass
class Server:
    """A started server: where it is and what to stop."""
    folder: str
    port: int
    pg_port: int
    workers: int
    pid: int = 0                 # the mlflow server's session
    host: str = "127.0.0.1"      # where the mlflow server listens (PostgreSQL: 127.0.0.1 always)
    started: str = ""            # the pid's boot and start time (nanbench.cluster.process_start)
    cmdline: str = ""            # the pid's command line when it was started

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def backend_uri(self) -> str:  # no password: it is in the server's environment
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.pg_port}/{DATABASE}"


def pg_binary(name: str) -> str:
    """A PostgreSQL program (initdb, pg_ctl): on PATH, else in a Debian postgresql package."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if candidates:
        return str(candidates[-1])
    raise ServerError(f"PostgreSQL's {name} was not found: install PostgreSQL (apt-get install postgresql) "
                      "or put its bin/ folder on PATH", status=2)


def _as_postgres() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a user it accepts: as root, the
    ``postgres`` user (PostgreSQL refuses root); else this user."""
    if os.geteuid() != 0:
        return []
    import pwd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError("running as root, and there is no postgres user to run PostgreSQL as "
                          "(PostgreSQL refuses root): create one, or run as another user", status=2) from None
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]


def _run_pg(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    prefix = _as_postgres()
    if prefix and prefix[0] == "su":  # su takes one shell command
        import shlex
        cmd = prefix + [" ".join(shlex.quote(a) for a in args)]
    else:
        cmd = prefix + args
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        import pwd
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def port_busy(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def _secret(folder: Path) -> str:
    """The database password, made once and kept in a file only this user can read."""
    path = folder / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24))
    return path.read_text().strip()


def _state_path(folder: Path) -> Path:
    return folder / "state.json"


def read_state(folder: Path = FOLDER) -> Server | None:
    try:
        return Server(**json.loads(_state_path(folder).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(server: Server) -> None:
    path = _state_path(Path(server.folder))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(server)))
    os.replace(tmp, path)


def ours(server: Server) -> bool:
    """Whether ``server.pid`` is still the mlflow server ``start`` started: the same boot and
    start time, and a command line of ``mlflow server`` (a state written before the start time
    was recorded: ``mlflow server`` on its port)."""
    if not server.pid:
        return False
    now = process_start(server.pid)
    if now is None or (server.started and now != server.started):
        return False
    words = process_cmdline(server.pid).split()
    if not any(Path(w).name == "mlflow" for w in words) or "server" not in words:
        return False
    return bool(server.started) or str(server.port) in words


def recorded_server(folder: Path) -> Server | None:
    """The folder's state, when its pid is still the server it started; a stale state (the pid
    ended, or now another process's) is said on stderr and cleared, and nothing is signalled."""
    state = read_state(folder)
    if state is None or not state.pid:
        return state
    if ours(state):
        return state
    if process_start(state.pid) is not None:  # someone else's process now: never signalled
        print(f"nanbench: warning: {_state_path(folder)} names pid {state.pid}, which is no longer the "
              f"MLflow server started there (now: {process_cmdline(state.pid)[:120] or 'another process'}); "
              "the state is stale: cleared, nothing signalled", file=sys.stderr, flush=True)
    _state_path(folder).unlink(missing_ok=True)
    return None


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as reply:
            return reply.status == 200
    except Exception:  # noqa: BLE001 - any failure: not up
        return False


# --------------------------------------------------------------------------------------------
# PostgreSQL


def start_postgres(folder: Path, pg_port: int) -> None:
    """The folder's PostgreSQL cluster, created on first use and started on 127.0.0.1:pg_port,
    with a database and role ``mlflow`` whose password is the folder's secret."""
    pgdata = folder / "pg"
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    password = _secret(folder)
    if _postgres_running(pgdata):
        return
    if port_busy(pg_port):
        raise ServerError(f"PG_PORT must be a free port (got {pg_port}: 127.0.0.1:{pg_port} is already in "
                          f"use); try PG_PORT={pg_port + 1}", status=2)
    fresh = not (pgdata / "PG_VERSION").exists()
    if fresh:
        shutil.rmtree(pgdata, ignore_errors=True)  # a half-made cluster from an interrupted initdb
        pgdata.mkdir(mode=0o700)
        _chown_postgres(pgdata)
        pwfile = folder / ".pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        _chown_postgres(pwfile)
        try:
            done = _run_pg([initdb, "-D", str(pgdata), "-U", "postgres", "-A", "scram-sha-256",
                            f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions"], timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode:
            raise ServerError(f"initdb failed: {_last_line(done.stderr or done.stdout)}")
    options = f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {pgdata}"
    done = _run_pg([pg_ctl, "-D", str(pgdata), "-l", str(pgdata / "postgres.log"), "-w", "-t", "120",
                    "-o", options, "start"], timeout=180)
    if done.returncode:
        log = pgdata / "postgres.log"
        tail = _last_line(log.read_text()) if log.exists() else _last_line(done.stderr or done.stdout)
        raise ServerError(f"PostgreSQL did not start: {tail}")
    if fresh:
        _create_database(pg_port, password)


def _create_database(pg_port: int, password: str) -> None:
    import psycopg
    from psycopg import sql
    with psycopg.connect(host="127.0.0.1", port=pg_port, user="postgres", password=password,
                         dbname="postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(ROLE), sql.Literal(password)))
        conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(DATABASE), sql.Identifier(ROLE)))


def _postgres_running(pgdata: Path) -> bool:
    if not (pgdata / "PG_VERSION").exists():
        return False
    return _run_pg([pg_binary("pg_ctl"), "-D", str(pgdata), "status"], timeout=30).returncode == 0


def stop_postgres(folder: Path) -> bool:
    pgdata = folder / "pg"
    if not _postgres_running(pgdata):
        return False
    _run_pg([pg_binary("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"], timeout=120)
    return True


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# --------------------------------------------------------------------------------------------
# The MLflow server


def start(folder: Path = FOLDER, port: int = 5000, pg_port: int = 5433, workers: int = 2,
          quiet: bool = False, host: str = "127.0.0.1") -> Server:
    """PostgreSQL and an MLflow server in front of it, started unless already up. `host`: the
    address the MLflow server listens on (a worker machine must reach it; MLflow's server has no
    authentication of its own, so keep it on a private network); PostgreSQL stays on 127.0.0.1,
    reached only by the server."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    running = recorded_server(folder)
    if running and running.pid and group_alive(running.pid) and healthy(running.url):
        if (running.port, running.pg_port) != (port, pg_port):
            raise ServerError(f"a server of {folder} is already up at {running.url} (PostgreSQL on "
                              f"{running.pg_port}); make server-stop first to move it", status=2)
        return running
    if running and running.pid:  # a dead or half-started one: clear it
        stop_group(running.pid)
    if workers < 1:
        raise ServerError(f"SERVER_WORKERS must be a whole number >= 1 (got {workers})", status=2)
    if port_busy(port, "127.0.0.1" if host in ("0.0.0.0", "::") else host):
        raise ServerError(f"PORT must be a free port (got {port}: {host}:{port} is already in use); "
                          f"try PORT={port + 1}", status=2)
    start_postgres(folder, pg_port)
    server = Server(folder=str(folder), port=port, pg_port=pg_port, workers=workers, host=host)
    artifacts = folder / "artifacts"
    artifacts.mkdir(exist_ok=True)
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    env = {**os.environ, "PGPASSWORD": _secret(folder), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log = open(folder / "mlflow.log", "ab")
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", server.backend_uri,
                             "--artifacts-destination", str(artifacts), "--host", host,
                             "--port", str(port), "--workers", str(workers)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, cwd=folder)
    log.close()
    server.pid, server.started = proc.pid, process_start(proc.pid) or ""
    server.cmdline = process_cmdline(proc.pid)  # after exec: Popen returns once it succeeded
    _write_state(server)
    deadline = time.time() + START_TIMEOUT
    while not healthy(server.url):
        if proc.poll() is not None or time.time() > deadline:
            stop_group(proc.pid)
            text = (folder / "mlflow.log").read_text(errors="replace")
            raise ServerError(f"the MLflow server did not start (see {folder / 'mlflow.log'}): {_last_line(text)}")
        time.sleep(0.5)
    if not quiet:
        print(f"nanbench: MLflow server {server.url} ({workers} worker(s)) on PostgreSQL 127.0.0.1:{pg_port}, "
              f"folder {folder}", flush=True)
        print(f"  record a sweep there: make sweep SWEEP=smoke STORE={server.url}", flush=True)
        print("  stop it: make server-stop", flush=True)
    return server


def stop(folder: Path = FOLDER, quiet: bool = False) -> bool:
    """Stop the folder's MLflow server and PostgreSQL; returns whether anything was running."""
    folder = Path(folder).resolve()
    state = recorded_server(folder)
    stopped = False
    if state and state.pid:
        stopped = stop_group(state.pid) or stopped
    if (folder / "pg").exists():
        stopped = stop_postgres(folder) or stopped
    _state_path(folder).unlink(missing_ok=True)
    if not quiet:
        print(f"nanbench: server of {folder} {'stopped' if stopped else 'was not running'}", flush=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanbench.cluster.server",
                                     description="An MLflow server on PostgreSQL in a project folder.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--folder", default=str(FOLDER))
    parser.add_argument("--port", type=int, default=5000, help="the MLflow server's port (127.0.0.1)")
    parser.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL's port (127.0.0.1)")
    parser.add_argument("--workers", type=int, default=2, help="mlflow server worker processes")
    parser.add_argument("--host", default="127.0.0.1", help="the MLflow server's listening address")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start(Path(args.folder), args.port, args.pg_port, args.workers, host=args.host)
        elif args.action == "stop":
            stop(Path(args.folder))
        else:
            state = recorded_server(Path(args.folder))
            up = bool(state and state.pid and group_alive(state.pid) and healthy(state.url))
            print(f"nanbench: server {state.url} is up" if up else "nanbench: no server is up", flush=True)
            return 0 if up else 1
    except ServerError as exc:
        print(f"nanbench: error: {exc}", file=sys.stderr, flush=True)
        return exc.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
