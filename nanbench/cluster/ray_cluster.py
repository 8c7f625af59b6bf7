"""A Ray cluster of a head node and worker nodes, started and stopped by this project.

On one machine it is the loopback cluster `make cluster-check` runs: the head on 127.0.0.2 and
each worker node on 127.0.0.3, 127.0.0.4, ... (Linux routes all of 127.0.0.0/8 to the loopback
interface). 127.0.0.1 itself will not do: ``ray start --head --node-ip-address=127.0.0.1`` is
rewritten to the machine's interface address. On real machines the same commands run on each
host with its own address (README "Beyond one machine").

Each node is ``ray start --block`` in a process group of its own, so stopping a node (or killing
it, as a lost machine) ends exactly its processes, not every Ray process of the machine as
``ray stop`` would. Ray 2.60 turns token authentication on by default: the cluster's token is a
0600 file of its folder, and every process that joins or attaches (nodes, the sweep) is given
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` (:meth:`RayCluster.env`). Each node's Ray
folder is its own, in a fresh short folder under /tmp (Ray's socket paths must stay under 108
bytes; nodes sharing one would each forward every worker's output to the sweep, so each line
came twice), and no ``ray_current_cluster`` file of an earlier cluster is there to be picked up:
a sweep attaches with the explicit address anyway.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nanbench.cluster import group_pids, kill_session, stop_group

OBJECT_STORE_BYTES = 80 * 1024 * 1024  # per node: the sweep passes configs and counts, not arrays
START_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    """A Ray cluster that cannot start here; the message is one line."""


@dataclass
class Node:
    ip: str
    pid: int        # `ray start --block`, leader of the node's session (its processes)
    log: str


@dataclass
class RayCluster:
    folder: str
    address: str                      # the head's GCS, HOST:PORT: what workers and sweeps attach to
    token_path: str
    head: Node | None = None
    workers: list[Node] = field(default_factory=list)

    def env(self, base: dict | None = None) -> dict:
        """The environment a process needs to join or attach to this cluster."""
        return {**(os.environ if base is None else base), "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": self.token_path, "RAY_USAGE_STATS_ENABLED": "0"}

    def launcher_overrides(self) -> list[str]:
        """The sweep's command-line overrides that send its jobs to this cluster."""
        return ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={self.address}"]


def _ray() -> str:
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        raise ClusterError("Ray is not installed: pip install -e '.[cluster]' (ray[default], hydra-ray-launcher)")
    return str(ray)


def _start_node(cluster: RayCluster, args: list[str], ip: str, cpus: int, name: str) -> Node:
    log_path = Path(cluster.folder) / f"{name}.log"
    log = open(log_path, "ab")
    cmd = [_ray(), "start", *args, f"--node-ip-address={ip}", f"--num-cpus={cpus}", "--num-gpus=0",
           f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={Path(cluster.folder) / name}",
           "--disable-usage-stats", "--block"]
    # the node's workers import nanbench from where this process does (a checkout, not installed)
    env = cluster.env()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines, from every worker
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, cwd=root)
    log.close()
    node = Node(ip=ip, pid=proc.pid, log=str(log_path))
    deadline = time.time() + START_TIMEOUT
    while True:
        text = log_path.read_text(errors="replace")
        if "Ray runtime started" in text:
            return node
        if proc.poll() is not None or time.time() > deadline:
            stop_group(proc.pid)
            lines = [line for line in text.splitlines() if line.strip()]
            raise ClusterError(f"the Ray {name} node on {ip} did not start (see {log_path}): "
                               f"{lines[-1][:300] if lines else 'no output'}")
        time.sleep(0.25)


def start(head_ip: str = "127.0.0.2", worker_ips: tuple[str, ...] = ("127.0.0.3",), port: int = 6390,
          cpus_per_node: int = 1, folder: str | None = None) -> RayCluster:
    """A head node on head_ip:port and one worker node per address in worker_ips, each offering
    cpus_per_node CPUs (one job each at a time, with the ray_cluster launcher preset)."""
    import socket
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((head_ip, port)) == 0:
            raise ClusterError(f"RAY_PORT must be a free port (got {port}: {head_ip}:{port} is already in use)")
    folder = folder or tempfile.mkdtemp(prefix="nb-ray-")  # short: Ray's socket paths live in it
    token = Path(folder) / "auth_token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    cluster = RayCluster(folder=folder, address=f"{head_ip}:{port}", token_path=str(token))
    try:
        cluster.head = _start_node(cluster, ["--head", f"--port={port}", "--include-dashboard=false",
                                             "--dashboard-host=127.0.0.1",
                                             f"--ray-client-server-port={port + 1}"],
                                   head_ip, cpus_per_node, "head")
        for i, ip in enumerate(worker_ips):
            cluster.workers.append(_start_node(cluster, [f"--address={cluster.address}"], ip, cpus_per_node,
                                               f"worker{i + 1}"))
    except BaseException:
        stop(cluster)
        raise
    return cluster


def kill_node(node: Node) -> None:
    """SIGKILL every process of a node at once (its raylet, agents and workers): what the loss of
    its machine looks like to the rest of the cluster."""
    kill_session(node.pid)


def node_left(node: Node, seconds: float = 10.0) -> int:
    """The node's processes still alive `seconds` after it was killed (0: none outlived it)."""
    deadline = time.time() + seconds
    while time.time() < deadline and group_pids(node.pid):
        time.sleep(0.25)
    return len(group_pids(node.pid))


def busy_workers(cluster: RayCluster) -> int:
    """Ray worker processes of the cluster's nodes still running a task (a job of a sweep)."""
    n = 0
    for node in [cluster.head, *cluster.workers]:
        if node is None:
            continue
        for pid in group_pids(node.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::") and not title.startswith((b"ray::IDLE", b"ray::DashboardAgent",
                                                                      b"ray::RuntimeEnvAgent")):
                n += 1
    return n


def stop(cluster: RayCluster) -> None:
    """Stop every node (workers first, then the head) and remove the cluster's folder."""
    for node in [*cluster.workers, cluster.head]:
        if node is not None:
            stop_group(node.pid)
    shutil.rmtree(cluster.folder, ignore_errors=True)
