"""Where a sweep's jobs run: joblib's worker processes started early (they import TensorFlow
while the launching process opens the store), ended when the jobs are done, and ended with the
sweep's process if it is killed (the watchdog)."""

from __future__ import annotations

import os
import threading
import time

from omegaconf import DictConfig, OmegaConf

from nanbench.sweep.grid import one_line

JOBS_FILE = "nanbench_jobs.json"  # in the sweep folder: how many jobs hydra/sweeper=nanbench launches


def worker_count(n_jobs) -> int:
    """Worker processes joblib starts for ``n_jobs`` (negative: one per core); 1 when not an int."""
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return (os.cpu_count() or 1) if n_jobs < 0 else n_jobs


def start_workers(config: DictConfig) -> threading.Thread | None:
    """With Hydra's joblib launcher on several workers: start joblib's workers now, on a thread,
    and have each import TensorFlow and Keras (seconds) while this process imports MLflow and
    opens the store; returns the thread to join before the jobs are launched (else None).

    The launcher's own ``Parallel`` then finds them ready: joblib keeps its worker processes
    between calls whose backend arguments are equal, so this call is given the launcher's."""
    launcher = config.hydra.launcher
    workers = joblib_workers(config)
    if workers < 2:
        return None
    from joblib import Parallel, delayed

    args = {k: v for k, v in OmegaConf.to_container(launcher, resolve=True).items() if k != "_target_"}
    if isinstance(args.get("max_nbytes"), str) and args["max_nbytes"].isdigit():  # as the launcher does
        args["max_nbytes"] = int(args["max_nbytes"])
    args.update(backend="loky", batch_size=1, pre_dispatch="all", timeout=None)
    calls = [delayed(warm_worker)(threads_per_worker(launcher.get("n_jobs"))) for _ in range(workers)]
    thread = threading.Thread(target=lambda: quietly(Parallel(**args), calls), daemon=True)
    thread.start()
    return thread


def start_resource_tracker() -> None:
    """Start joblib's resource tracker (the process that removes its workers' shared memory)
    ignoring SIGHUP, as it already ignores SIGINT and SIGTERM: a closed terminal signals the
    sweep's whole process group, and a tracker ended by it is started again with an empty
    registry, which then prints a traceback for every folder the sweep's end unregisters.
    The tracker inherits the ignored signal; it still ends when this process does."""
    import signal
    from joblib.externals.loky.backend import resource_tracker
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)


def stop_workers(config: DictConfig) -> None:
    """After the jobs, end joblib's idle workers now rather than at this process's exit, where
    joblib waits for each to tear TensorFlow down (about a second). Every job has returned, and
    with it its runs are recorded: nothing is left in a worker."""
    if joblib_workers(config) >= 2:  # as start_workers: else joblib ran the jobs here, no executor
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)


def quietly(parallel, calls) -> None:
    try:
        parallel(calls)
    except Exception:  # noqa: BLE001 - only a head start: the jobs import what they need themselves
        pass


_watching = None  # the pid of the launching process a worker's watchdog watches


def watch_launcher() -> None:
    """In a worker process (joblib's): end this process as soon as the process that started it
    is gone (killed: it can no longer record this worker's runs, nor stop it). Without this, a
    killed sweep leaves its workers training for good, parented to init. The watchdog thread
    polls the parent's pid, which changes when the parent dies; started once per process."""
    global _watching
    if _watching == os.getpid():
        return
    _watching = os.getpid()
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="nanbench-watch-launcher", daemon=True).start()


def warm_worker(threads: int | None) -> int:
    watch_launcher()
    from nanbench.run import configure_tensorflow
    configure_tensorflow(threads=threads)
    import nanbench.engines.fused  # noqa: F401 - Keras
    return os.getpid()


def is_joblib(config: DictConfig) -> bool:
    """Whether the launcher is Hydra's joblib launcher (jobs in this machine's processes)."""
    return "joblib" in str(config.hydra.launcher.get("_target_", ""))


def joblib_workers(config: DictConfig) -> int:
    """Worker processes Hydra's joblib launcher starts for this sweep (0: another launcher)."""
    return worker_count(config.hydra.launcher.get("n_jobs")) if is_joblib(config) else 0


def jobs_run_here(config: DictConfig) -> bool:
    """Whether the launcher runs the jobs in this process (Hydra's basic launcher)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher")


def threads_per_worker(n_jobs) -> int | None:
    """Cores per worker when a launcher runs n_jobs workers on this machine (joblib); else None."""
    workers = worker_count(n_jobs)
    if workers == 1:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // min(workers, cores))


def describe_fault(exc: BaseException) -> str:
    if type(exc).__name__ == "TerminatedWorkerError":
        codes = str(exc).rsplit("exit codes of the workers are", 1)[-1].strip(" .{}")
        return f"a worker process ended unexpectedly (exit codes {codes})"
    return f"{type(exc).__name__}: {one_line(exc)}"
