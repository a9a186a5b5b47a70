"""Where the notebooks of a run execute: here one after another, in worker processes on this
machine, or as jobs of a Slurm cluster; the last two through submitit (one API for both).

The unit of work is a notebook: a chapter is one papermill run whose heavy steps all go
through the results store, so notebooks are independent jobs once their shared prerequisites
exist. Those (the base models every chapter starts from: pretrained, loaded or adapted) are
computed first, once, by one job; then the notebooks run concurrently, one job each
(``processes``: at most ``workers`` at a time; ``slurm``: all submitted, queued by the
scheduler). Jobs share the store
through its per-key locks (:meth:`mimlib.companion.results.store.Store.lock`), so two chapters that need the same
run compute it once. Only the calling process writes the manifest and builds the book, once
every job has finished; a failed job is reported with its log and the executed notebook that
holds its traceback.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

from ...checks import choice, whole
from ...errors import ConfigError, MimlibError
from ..results.experiment import Experiment
from .papermill_run import NotebookResult, execute_notebook
from ..results.setups import setups_of
from ..results.store import Store

EXECUTORS = ("local", "processes", "slurm")
POLL_S = 1.0


@dataclass(frozen=True)
class ExecutorSettings:
    """How to run the jobs. ``folder`` holds submitit's pickles and every job's log."""

    kind: str = "local"
    workers: int = 2  # processes: at most this many notebooks at once
    partition: str | None = None  # slurm
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time_min: int = 240
    sbatch: dict[str, str] = field(default_factory=dict)  # extra sbatch options (key: value)
    folder: str = "results/jobs"

    def __post_init__(self) -> None:
        choice(self.kind, "executor", EXECUTORS)
        for name in ("workers", "cpus_per_job", "time_min"):
            whole(getattr(self, name), f"executor {name}")
        whole(self.gpus_per_job, "executor gpus_per_job", minimum=0)
        if not isinstance(self.sbatch, dict):
            raise ConfigError(f"executor sbatch must be a mapping of sbatch options, got "
                              f"{self.sbatch!r}")


def executor_settings(profile: dict[str, Any], kind: str | None = None,
                      **overrides: Any) -> ExecutorSettings:
    """The profile's ``executor:`` section (per kind, e.g. ``slurm: {gpus_per_job: 1}``), the
    chosen kind, then the command line's values (None: not given)."""
    section = profile.get("executor") or {}
    chosen = kind or section.get("kind", "local")
    values = {k: v for k, v in (section.get(chosen) or {}).items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(ExecutorSettings)} - {"kind"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown executor setting(s) {unknown}; known: {sorted(known)}")
    return ExecutorSettings(kind=chosen, **values)


def run_jobs(root: Path, todo: list[tuple[str, dict[str, Any], Path]],
             settings: ExecutorSettings, *, progress: bool = False,
             on_start: Callable[[str], None] = lambda name: None,
             on_done: Callable[[NotebookResult], None] = lambda result: None,
             record_usage: Collection[str] = ()) -> list[NotebookResult]:
    """Execute the (name, parameters, executed path) notebooks; ``on_start`` and ``on_done``
    see each notebook start and each result arrive (the caller records it in the manifest);
    the notebooks named in ``record_usage`` record which store entries they used.
    Returns the results in the order of ``todo``."""
    if settings.kind == "local" or not todo:
        results = []
        for name, params, out in todo:
            on_start(name)
            results.append(execute_notebook(root, name, params, out, progress,
                                            name in record_usage))
            on_done(results[-1])
        return results
    executor = _executor(root, settings)
    prerequisite = executor.submit(compute_bases, str(root), [p for _, p, _ in todo])
    _wait([prerequisite])
    if prerequisite.exception() is not None:
        raise MimlibError(f"the job that computes the base models failed: "
                          f"{_last_line(prerequisite.exception())}; its log: "
                          f"{prerequisite.paths.stderr}")
    limit = settings.workers if settings.kind == "processes" else len(todo)
    pending, running, done = list(enumerate(todo)), [], {}
    while pending or running:
        batch = []
        while pending and len(running) + len(batch) < limit:
            batch.append(pending.pop(0))
        if batch:  # one job per notebook: a failure, its log and a re-run stay per chapter
            jobs = [executor.submit(execute_notebook, root, name, params, out, False,
                                    name in record_usage)
                    for _, (name, params, out) in batch]
            running += [(i, todo[i], job) for (i, _), job in zip(batch, jobs)]
            for _, (name, _, _) in batch:
                on_start(name)
        time.sleep(POLL_S)
        for entry in [r for r in running if r[2].done()]:
            running.remove(entry)
            i, (name, _, out), job = entry
            done[i] = _result(name, out, job)
            on_done(done[i])
    return [done[i] for i in range(len(todo))]


def compute_bases(root: str, planned: list[dict[str, Any]]) -> int:
    """The shared prerequisites, once, before the notebooks: every base model that the planned
    notebooks' setups start from (stored; a later ask reads it). Returns how many there are."""
    os.chdir(root)  # the profiles' paths (store, data) are relative to the project
    seen = set()
    for params in planned:
        store = Store(params["store"]) if params.get("store") else None
        for setup in setups_of(params):
            if (setup, params.get("store")) not in seen:
                seen.add((setup, params.get("store")))
                Experiment(setup, store, profile=params.get("profile")).base_model()
    return len(seen)


def _executor(root: Path, settings: ExecutorSettings) -> Any:
    import submitit  # imported for the processes and slurm executors only: a local run skips it

    folder = root / settings.folder / "%j"
    if settings.kind == "processes":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=settings.time_min)
        return executor
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(
        partition=settings.partition, gpus_per_node=settings.gpus_per_job,
        cpus_per_task=settings.cpus_per_job, time=settings.time_min, ntasks_per_node=1,
        nodes=1, job_name="mimlib", use_srun=False,
        additional_parameters={k.replace("-", "_"): v for k, v in settings.sbatch.items()})
    return executor


def _wait(jobs: list[Any]) -> None:
    while not all(job.done() for job in jobs):
        time.sleep(POLL_S)


def _result(name: str, out: Path, job: Any) -> NotebookResult:
    """The job's NotebookResult, or a failed one naming the job's log when the job itself died
    (killed, out of time, out of memory)."""
    try:
        result = job.result()
    except Exception as err:  # submitit re-raises the job's failure here
        return NotebookResult(name, "failed", str(out), 0.0,
                              f"job {job.job_id} failed: {_last_line(err)}",
                              log=str(job.paths.stderr))
    return dataclasses.replace(result, log=str(job.paths.stderr))


def _last_line(err: BaseException) -> str:
    """The gist of a job's failure (submitit wraps the remote traceback in its message)."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"
