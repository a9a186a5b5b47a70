"""Wall times of every stored computation, and the speed benchmark's tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...models import architecture_display
from ..results.store import Entry, Store


def _timed_parts(entry: Entry) -> list[dict[str, Any]]:
    """The timed steps one stored entry holds: a training run, or a detector's fit and scoring
    plus the forward pass they started from. ``share`` names a step that several entries hold
    (one forward pass serves every detector scored from it), so sums count it once."""
    rec = entry.record
    result, config = rec.get("result", {}), rec.get("config", {})
    device = rec.get("environment", {}).get("device")
    key = rec["key"]
    if rec["kind"] == "curve":  # a stored run repeated for a curve it did not hold
        config = config.get("run", {})
    if rec["kind"] in ("pretrain", "adapt", "finetune", "curve"):
        what = config.get("method", "pretrain")
        if what == "mim" and config.get("train", {}).get("lam") == 0:
            what = "control (lam=0)"
        if rec["kind"] == "curve":
            what += " (again, for its curve)"
        return [{"what": what, "detail": config.get("arch") or _arch_of(config),
                 "steps": len(result.get("log", [])), "seconds": result.get("seconds"),
                 "device": device, "key": key, "share": f"{rec['kind']}/{key}",
                 "model": None}]
    if rec["kind"] != "scores":
        return []
    parts = []
    for what, seconds in result.get("timings", {}).items():
        forward = what.startswith("forward")
        share = (json.dumps([config.get("model"), config.get("data"), seconds], sort_keys=True)
                 if forward else f"scores/{key}/{what}")
        parts.append({"what": "forward" if forward else what,
                      "detail": None if forward else config.get("detector"), "steps": None,
                      "seconds": seconds, "device": device, "key": key, "share": share,
                      "model": config.get("model", {})})
    return parts


def _parts_of(store: Store) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Every timed step of the store (one row each, shared ones repeated per entry), and
    which steps (``share``) each entry (``kind/key``) holds."""
    rows, by_entry = [], {}
    for entry in store.entries():
        parts = _timed_parts(entry)
        by_entry[f"{entry.record['kind']}/{entry.record['key']}"] = [p["share"] for p in parts]
        rows.extend(parts)
    columns = ["what", "detail", "steps", "seconds", "device", "key", "share", "model"]
    return pd.DataFrame(rows, columns=columns), by_entry


def runtime_table(store: Store) -> pd.DataFrame:
    """Wall time of every stored training run, of each detector's fit and scoring, and of each
    model's forward pass over the data (once, shared by the detectors scored from it)."""
    parts, _ = _parts_of(store)
    first = parts.drop_duplicates("share").copy()
    forward = first["what"] == "forward"
    counts = parts[parts["what"] == "forward"].groupby("share").size()
    first.loc[forward, "detail"] = [
        f"{(m or {}).get('method', 'base')} {(m or {}).get('arch') or _arch_of(m or {})}, "
        f"all sets, {counts[sh]} detector(s)"
        for m, sh in zip(first.loc[forward, "model"], first.loc[forward, "share"])]
    first = pd.concat([first[~forward], first[forward]], ignore_index=True)
    df = first[["what", "detail", "steps", "seconds", "device", "key"]]
    return df.astype({"steps": "Int64"})


def chapter_costs(store: Store) -> pd.DataFrame:
    """What each chapter's stored computations cost, from the entries its last run used
    (``Store.usage``), per device: ``alone``, the wall time of all of them (the chapter run by
    itself on an empty store), and ``in order``, of those no earlier chapter used (the book's
    run split by chapter; the column sums to the whole). On a GPU the hours are GPU-hours."""
    parts, by_entry = _parts_of(store)
    seconds = parts.drop_duplicates("share").set_index("share")[["seconds", "device"]]
    rows, seen = [], set()
    for chapter, entries in sorted(store.usage().items()):
        shares = {sh for e in entries for sh in by_entry.get(e, [])}
        new = shares - seen
        seen |= shares
        for device in sorted({str(d) for d in seconds.loc[sorted(shares), "device"]}):
            mine = seconds[seconds["device"].astype(str) == device]
            rows.append({"chapter": chapter, "device": device,
                         "entries": len([e for e in entries if e in by_entry]),
                         "hours alone": mine.loc[sorted(shares & set(mine.index)),
                                                 "seconds"].sum() / 3600,
                         "hours in order": mine.loc[sorted(new & set(mine.index)),
                                                    "seconds"].sum() / 3600})
    return pd.DataFrame(rows, columns=["chapter", "device", "entries", "hours alone",
                                       "hours in order"])


def runtime_summary(runtime: pd.DataFrame) -> pd.DataFrame:
    """The runtime table summed per kind of step (training runs per method and architecture,
    forward passes, each detector's fit and scoring), largest total first."""
    detail = runtime["detail"].where(runtime["what"] != "forward", "all sets")
    grouped = runtime.assign(detail=detail).groupby(["what", "detail"], sort=False)["seconds"]
    out = grouped.agg(runs="count", total="sum", mean="mean").reset_index()
    out = out.rename(columns={"total": "seconds", "mean": "seconds per run"})
    return out.sort_values("seconds", ascending=False, ignore_index=True)


#: What each kind of stored step runs: a training step or the evaluation forward pass.
_TRAINING = ("mim", "control (lam=0)", "adapt", "pretrain", "oe")


def numerics_speedups(folder: str, arch: str) -> dict[str, dict[str, float]]:
    """Per numerics of the benchmark's section (g) on this model (e.g. ``bf16, channels_last``),
    how much faster a training step and a forward pass run than in fp32, contiguous."""
    prefix = f"(g) {architecture_display(arch)} "
    ms = {row["measure"][len(prefix):]: row["value"] for row in benchmark_rows(folder, "cpu", arch)
          if row["measure"].startswith(prefix) and row["unit"] == "ms"}
    out: dict[str, dict[str, float]] = {}
    for measure, value in ms.items():
        what, numerics = measure.split(", batch 256, ")
        base = ms.get(f"{what}, batch 256, fp32, contiguous")
        if base:
            out.setdefault(numerics, {})[what] = base / value
    return out


def from_scratch(runtime: pd.DataFrame, speedups: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The whole store computed again from scratch on its machines, in hours: training runs,
    forward passes and detectors as stored (fp32, contiguous), and at each numerics the CPU
    benchmark measured (CPU training at its step's speed-up, CPU forward passes at its
    forward's; detectors and computations made on other devices unchanged)."""
    kind = np.where(runtime["what"].isin(_TRAINING), "training runs",
                    np.where(runtime["what"] == "forward", "forward passes", "detectors"))
    parts = runtime.assign(part=kind, cpu=runtime["device"].astype(str).str.startswith("cpu"))
    step = parts["part"].map({"training runs": "training step", "forward passes": "forward"})
    columns = {"fp32, contiguous (as stored)": parts["seconds"]}
    for numerics, ratio in speedups.items():
        if numerics != "fp32, contiguous":
            factor = step.map(ratio).fillna(1.0).where(parts["cpu"], 1.0)
            columns[numerics] = parts["seconds"] / factor
    hours = pd.DataFrame(columns).groupby(parts["part"], sort=False).sum() / 3600
    table = hours.rename_axis("part").reset_index()
    total = table.drop(columns="part").sum().to_frame().T.assign(part="total")
    return pd.concat([table, total], ignore_index=True)


def from_scratch_sentence(table: pd.DataFrame, target_hours: float = 1.5) -> str:
    """What the from-scratch table says, in one sentence: the stored total, the fastest
    measured numerics' total, and how far that is from the target."""
    rows = table.set_index("part")
    stored = rows.columns[0]
    if len(rows) == 1:  # the total alone: an empty store
        return "The store holds no computation yet, so there is nothing to compute again."
    fastest = rows.loc["total"].idxmin()
    total = rows.loc["total", fastest]
    parts = ", ".join(f"{part} {rows.loc[part, stored]:.1f} h" for part in rows.index[:-1])
    reach = ("within" if total <= target_hours else
             f"{total / target_hours:.1f} times") + f" the {target_hours * 60:.0f}-minute target"
    return (f"Computed again from scratch on the machine that made them, the stored computations "
            f"take {rows.loc['total', stored]:.1f} hours in {stored.split(' (')[0]} ({parts})"
            + ("" if fastest == stored else
               f"; with training and forward passes in {fastest}, the fastest numerics measured "
               f"in section (g), about {total:.1f} hours") + f": {reach}.")


def _arch_of(config: dict[str, Any]) -> str | None:
    base = config.get("base", {})
    while isinstance(base, dict) and "arch" not in base and "base" in base:
        if "key" in base:  # published weights: registry keys start with the architecture
            return str(base["key"]).split("/")[0]
        base = base["base"]
    return base.get("arch") if isinstance(base, dict) else None


def _benchmark_runs(folder: str) -> list[dict]:
    return [json.loads(file.read_text()) for file in sorted(Path(folder).glob("*.json"))]


def benchmark_rows(folder: str, device: str = "cpu",
                   arch: str | None = None) -> list[dict[str, Any]]:
    """The measured rows of the committed benchmark runs made on one kind of device (and, when
    given, with that model in its step timings: runs before ``--arch`` existed used WRN-40-2)."""
    return [row for run in _benchmark_runs(folder) if str(run.get("device", "")).startswith(device)
            and (arch is None or run.get("arch", "wrn40_2") == arch)
            for row in run.get("rows", [])]


def benchmark_table(folder: str) -> pd.DataFrame:
    """Every benchmark JSON in a folder (benchmarks/run.py), one block of rows per machine."""
    runs = _benchmark_runs(folder)
    if not runs:
        return pd.DataFrame([{"machine": "none yet", "model": "",
                              "measure": "run: python -m benchmarks.run",
                              "value": np.nan, "unit": "", "target": "", "ok": ""}])
    frames = []
    for data in runs:
        frame = pd.DataFrame(data["rows"])
        frame.insert(0, "machine", data.get("device", "?"))
        frame.insert(1, "model", data.get("arch", "wrn40_2"))  # of the step timings (b)
        frame["ok"] = frame["ok"].map({True: "yes", False: "no"}).fillna("")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def short_git(revision: str | None) -> str:
    """A git revision as captions show it: eight hex digits, and whether the tree was dirty."""
    if not revision:
        return "?"
    return revision[:8] + ("-dirty" if revision.endswith("-dirty") else "")


def benchmark_provenance(folder: str) -> str:
    """What produced the benchmark table: each machine's run (threads, torch, git revision,
    date), since those numbers come from committed JSON, not from the book's profile."""
    runs = [f"{data.get('device', '?')} ({data.get('threads', '?')} threads, torch "
            f"{data.get('torch', '?')}, git {short_git(data.get('git'))}, "
            f"{str(data.get('created', '?'))[:10]})" for data in _benchmark_runs(folder)]
    return "python -m benchmarks.run on " + "; ".join(runs) if runs else "no benchmark run yet"

