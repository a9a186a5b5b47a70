"""Re-derive committed results from the data: the check that the book's numbers are reproducible.

Computations are repeated in a scratch store and compared with the committed entries: one
Table-1 cell set of the published model as it is (MSP on every OOD set and the ID accuracy: a
forward pass), a short MIM fine-tuning from the committed adapted base (its per-step losses,
then the MSP metrics and accuracy of the result), and optionally the main table's one-epoch MIM
run. On the kind of CPU that made the store they agree bit for bit; on other CPU kinds and
thread counts they differ by what ``results/cifar10-cpu/cross-machine.json`` measures
(``mimlib rederive --machines``), which the tolerances below follow.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .experiment import Experiment

from .setup import Setup
from .store import Store

SHORT_RUN_STEPS = 5
#: the kinds of step re-derived, each with its own tolerance
FORWARD, SHORT, EPOCH = "forward pass", "short fine-tuning", "one-epoch fine-tuning"
#: the largest difference allowed from the committed numbers on any CPU, per kind of step, about
#: ten times the largest measured on other CPU kinds and thread counts (cross-machine.json: a
#: forward pass 1.6e-5 in AUROC on AVX2 kernels, a five-step fine-tuning 1.0e-5 in its losses,
#: a one-epoch fine-tuning 3e-4 in FPR95 and 1e-4 in ID accuracy, one test image). A forward
#: pass differs only in the order of float sums; a fine-tuning compounds that through its steps.
TOLERANCES = {FORWARD: 2e-4, SHORT: 1e-4, EPOCH: 3e-3}


@dataclass
class Comparison:
    """One re-derived number beside its committed value, and the kind of step it comes from."""

    what: str
    committed: float
    recomputed: float
    step: str = FORWARD

    @property
    def difference(self) -> float:
        return abs(self.recomputed - self.committed)


def rederive(setup: Setup, committed_root: str | Path, *, profile: str | None = None,
             record: bool = False, one_epoch: dict[str, Any] | None = None
             ) -> list[Comparison]:
    """Recompute the check's results from the data and return them beside the committed ones.

    With ``record=True`` missing committed entries are computed into the committed store first
    (how they were made, labelled with ``profile``); otherwise a missing one is an error.
    ``one_epoch`` (the main table's MIM parameters) adds that one-epoch run (minutes on a CPU).
    """
    committed = Store(committed_root)
    ref = Experiment(setup, committed, profile=profile)
    loaded = ref.loaded_model()
    if not record:
        missing = [what for what, entry in (
            ("MSP of the published model",
             committed.get("scores", ref.detector_config(loaded, "MSP"))),
            ("the short run",
             committed.get("finetune", ref.mim_recipe(ref.base_model(), steps=SHORT_RUN_STEPS))),
            *([("the one-epoch run", committed.get(
                "finetune", ref.mim_recipe(ref.base_model(), **one_epoch)))] if one_epoch else []))
            if entry is None]
        if missing:
            raise FileNotFoundError(f"no committed entry for {', '.join(missing)} in "
                                    f"{committed_root}; run with record=True once")
    runs = {SHORT: {"steps": SHORT_RUN_STEPS}, **({EPOCH: one_epoch} if one_epoch else {})}
    ref_cell = ref.evaluate(loaded, ("MSP",))
    ref_runs = {step: ref.mim_model(ref.base_model(), **params) for step, params in runs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Store(tmp)
        base = ref.base_model()  # the committed adapted weights are the runs' start
        src = committed.path("adapt", base.recipe)
        if src.exists():
            shutil.copytree(src, scratch.path("adapt", base.recipe))
        exp = Experiment(setup, scratch)
        out = _compared(FORWARD, "published model", ref_cell, exp.evaluate(exp.loaded_model(),
                                                                            ("MSP",)))
        for step, params in runs.items():
            run = exp.mim_model(exp.base_model(), **params)
            out += [Comparison(f"{step}, step {a['step']} {name}", a[name], b[name], step)
                    for a, b in zip(ref_runs[step].log, run.log)
                    for name in ("loss_id", "loss_out")]
            out += _compared(step, step, ref.evaluate(ref_runs[step], ("MSP",)),
                             exp.evaluate(run, ("MSP",)))
    return out


def _compared(step: str, label: str, committed: Any, recomputed: Any) -> list[Comparison]:
    """An evaluation's MSP AUROC and FPR95 per OOD set and its ID accuracy, side by side."""
    return [Comparison(f"{label}, MSP {metric} on {r['ood']}", c[metric], r[metric], step)
            for c, r in zip(committed.rows, recomputed.rows) for metric in ("auroc", "fpr95")
            ] + [Comparison(f"{label}, ID accuracy", committed.accuracy, recomputed.accuracy,
                            step)]


def largest(comparisons: list[Comparison]) -> dict[str, dict[str, float]]:
    """Per kind of step, the largest difference of each kind of number (AUROC, FPR95, ID
    accuracy, training loss)."""
    kinds = {"AUROC": "auroc", "FPR95": "fpr95", "ID accuracy": "accuracy", "loss": "loss_"}
    out: dict[str, dict[str, float]] = {}
    for c in comparisons:
        kind = next(name for name, word in kinds.items() if word in c.what)
        row = out.setdefault(c.step, {})
        row[kind] = max(row.get(kind, 0.0), c.difference if not math.isnan(c.difference)
                        else math.inf)
    return out


def beyond_tolerance(comparisons: list[Comparison]) -> list[Comparison]:
    """The comparisons whose difference exceeds their kind of step's tolerance."""
    return [c for c in comparisons
            if not (c.difference <= TOLERANCES[c.step])]  # NaN exceeds


#: CPU kinds and thread counts that the measurement plays on one machine, through torch's and
#: oneDNN's own switches (the kernels an AVX2 CPU or one without vector extensions runs)
MACHINES: dict[str, dict[str, str]] = {
    "this CPU, 2 threads": {"OMP_NUM_THREADS": "2"},
    "AVX2, 2 threads": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "OMP_NUM_THREADS": "2"},
    "AVX2, 1 thread": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                       "OMP_NUM_THREADS": "1"},
    "no vector extensions, 1 thread": {"ATEN_CPU_CAPABILITY": "default",
                                       "ONEDNN_MAX_CPU_ISA": "SSE41", "OMP_NUM_THREADS": "1"},
}
#: the machines whose one-epoch run is re-derived too (about 15 minutes each on two cores)
ONE_EPOCH_MACHINES = ("AVX2, 2 threads",)


def this_machine() -> dict[str, Any]:
    """What this process computes with: CPU model, kernels, native bf16, threads, torch."""
    import platform

    import torch

    from ...device import bf16_native

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor(),
            "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": bf16_native(torch.device("cpu")), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def measure(setup: Setup, committed_root: str | Path, profile: str,
            one_epoch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-derive the check here and summarise it: the machine, the largest difference per kind
    of step and number, and what exceeds its tolerance."""
    comparisons = rederive(setup, committed_root, profile=profile, one_epoch=one_epoch)
    return {"machine": this_machine(), "largest": largest(comparisons),
            "compared": len(comparisons),
            "beyond_tolerance": [c.what for c in beyond_tolerance(comparisons)]}


def measure_machines(command: list[str], out: Path, profile: str) -> dict[str, Any]:
    """``command`` (one :func:`measure`, printing its JSON last; ``--one-epoch`` appended for
    :data:`ONE_EPOCH_MACHINES`) in one process per machine of :data:`MACHINES`, written to
    ``out`` with the machine that played them."""
    import json
    import os
    import subprocess
    import time

    from .provenance import environment

    results: dict[str, Any] = {}
    for name, env in MACHINES.items():
        start = time.perf_counter()
        args = [*command, *(["--one-epoch"] if name in ONE_EPOCH_MACHINES else [])]
        proc = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True)
        if not proc.stdout.strip():
            raise RuntimeError(f"the re-derivation as {name!r} printed nothing: {proc.stderr}")
        results[name] = {**json.loads(proc.stdout.splitlines()[-1]), "env": env,
                         "seconds": round(time.perf_counter() - start)}
    summary = {"profile": profile, "made_on": this_machine(), "environment": environment(),
               "tolerances": TOLERANCES, "machines": results}
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary
