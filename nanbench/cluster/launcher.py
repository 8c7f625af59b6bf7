"""Checks of a sweep's launcher settings that need no launcher installed (run before anything is
recorded, by nanbench.sweep.SweepCallback): a bad one is one line and exit 2."""

from __future__ import annotations

import socket

from omegaconf import DictConfig


def check_launcher(config: DictConfig) -> None:
    """Hydra's Ray launcher needs an explicit, reachable head address: with ``address: null`` Ray
    reads RAY_ADDRESS or a ``ray_current_cluster`` file an earlier cluster left in its temp folder
    (a dead cluster: the sweep then hangs or fails late), or starts a private cluster on this
    machine alone, which is not what a cluster sweep means."""
    from nanbench.spec import ConfigError

    launcher = config.hydra.launcher
    if not str(launcher.get("_target_", "")).endswith("ray_launcher.RayLauncher"):
        return
    init = launcher.get("ray", {}).get("init", {}) or {}
    address = init.get("address")
    allowed = "the Ray head's address HOST:PORT (explicit: null may attach to a stale or private cluster)"
    if not address or str(address) == "auto":
        raise ConfigError("hydra.launcher.ray.init.address", allowed, address)
    host, _, port = str(address).removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("hydra.launcher.ray.init.address", allowed, address)
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError("hydra.launcher.ray.init.address", "a reachable Ray head (ray start --head)",
                          f"{address}: {exc.strerror or exc}") from None


def task_threads(launcher) -> int | None:
    """TensorFlow threads for a job of Hydra's Ray launcher: the CPUs its task reserves
    (``ray.remote.num_cpus``, 1 with hydra/launcher=ray_cluster), so that a node running one job
    per CPU is not oversubscribed; None for any other launcher (TensorFlow's default)."""
    if not str(launcher.get("_target_", "")).endswith("ray_launcher.RayLauncher"):
        return None
    cpus = (launcher.get("ray", {}).get("remote", {}) or {}).get("num_cpus")
    try:
        return max(1, int(cpus)) if cpus is not None else None
    except (TypeError, ValueError):
        return None
