"""Side-by-side speed benchmark: mimlib against the authors' implementation (run on demand).

    python -m benchmarks.run [--device auto] [--quick] [--arch wrn40_2] [--out FILE.json]

Measures, in one run, on one machine, with the same batch sizes:

(a) mixing + post-mix augmentation: the authors' way (a Python loop over samples and the k
    permutations, then a PIL round trip per image through torchvision's transforms) against
    mimlib's vectorised, per-sample GPU/CPU version, in images/s and as a ratio;
(b) a MIM fine-tuning step (B ID + B mixed images) against a plain training step of the same
    model on 2B images, the cost no implementation can avoid, as a ratio, and the time of one
    CIFAR-10 epoch that follows; and MIM's own work (mixing + augmentation of B images) timed
    alone, as 1 + its share of a plain step (``--arch resnet20``: the cifar10-cpu profile's
    model, target 1.1);
(c) scoring every post-hoc Table-1 detector (ODIN excluded) from one cached forward pass,
    against that forward pass alone, as a ratio;
(d) WRN-40-2 training throughput (the pretraining loop) in images/s;
(f) the mix itself: gather + mean (mimlib) against one product with a k-hot mixing matrix;
(g) on a CPU: a training step and a forward pass of ``--arch`` in fp32 and bf16, contiguous
    and channels_last, in ms and in GFLOP/s against this CPU's stated peak (cores x clock x
    FLOP per cycle, in the JSON's ``peak``), and the forward at two evaluation batch sizes.

It prints a table and writes JSON (``results/benchmark/<device>.json``) that the book's runtime
chapter reads. Targets (issue 4):
(a) >= 5x on a 2-core CPU and >= 100x on a GPU; (b) <= 1.05; (c) <= 1.5;
(d) >= 50,000 images/s in bf16 on an H200.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import torch
import torchvision.transforms as T
from torchvision.transforms.functional import to_pil_image

from mimlib import (FittedDetectors, PostMixAugment, build_model, extract, mim_finetune,
                    multi_input_mixup, pretrain, wrn40_2)
from mimlib.mixing import mixing_indices
from mimlib.images import CIFAR_MEAN, CIFAR_STD, ImageSet
from mimlib.detectors import DetectorOptions, TABLE1_DETECTORS
from mimlib.device import resolve_device
from mimlib.models import architecture_display
from mimlib.companion.results.provenance import git_revision


def authors_mix_and_augment(x: torch.Tensor, k: int, p: float = 1.0) -> torch.Tensor:
    """The authors' algorithm, re-implemented to be timed: per-sample loops and PIL per image.

    k random permutations; for every image i and every j, add x[perm_j[i]] / k in place (on
    x's device); then, with probability p per image, un-normalise, convert to PIL (8 bits),
    apply ColorJitter + RandomAffine through PIL, convert back and normalise.
    """
    transform = T.Compose([T.ColorJitter(brightness=0.5, contrast=0.3, saturation=0.3, hue=0.3),
                           T.RandomAffine((-90, 90), translate=(0.2, 0.2)), T.ToTensor(),
                           T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    n = x.size(0)
    index = [torch.randperm(n) for _ in range(k)]
    mixed = torch.zeros_like(x)
    for i in range(n):
        for j in range(k):
            mixed[i] += x[index[j][i], :] / k
    mean = torch.tensor(CIFAR_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=x.device).view(3, 1, 1)
    for i in range(n):
        if torch.rand(1).item() < p:
            pil = to_pil_image((mixed[i] * std + mean).cpu())
            mixed[i] = transform(pil).to(x.device)
    return mixed


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds per call, after one warm-up call, synchronising the device."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _random_set(n: int, classes: int, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return ImageSet("benchmark", images, labels, tuple(str(c) for c in range(classes)))


def mix_augment(device: torch.device, batch: int, k: int, quick: bool) -> list[dict]:
    x = (torch.randn(batch, 3, 32, 32, device=device) * 0.5)
    gen = torch.Generator(device=device).manual_seed(0)
    aug = PostMixAugment(p=1.0)
    ours = _timed(lambda: aug(multi_input_mixup(x, k, generator=gen), generator=gen), device,
                  5 if quick else 50)
    theirs = _timed(lambda: authors_mix_and_augment(x, k, p=1.0), device, 1 if quick else 3)
    target = 100 if device.type == "cuda" else 5
    return [
        _row("(a) mixing + augmentation, authors", batch / theirs, "images/s"),
        _row("(a) mixing + augmentation, mimlib", batch / ours, "images/s"),
        _row("(a) speed-up of mimlib", theirs / ours, "x", f">= {target}", theirs / ours >= target),
    ]


def step_ratio(device: torch.device, batch: int, k: int, quick: bool, arch: str = "wrn40_2",
               steps: int | None = None) -> list[dict]:
    steps = steps or (3 if quick else (50 if device.type == "cuda" else 10))
    data = _random_set(max(4 * batch, 2048), 10)
    common = dict(steps=steps, device=str(device), seed=0, lr=1e-4)
    # warm-up (cuDNN autotuning, allocator) on both shapes
    mim_finetune(build_model(arch, 10), data, batch_size=batch, k=k, **{**common, "steps": 2})
    pretrain(build_model(arch, 10), data, batch_size=2 * batch, id_augment="none",
             **{**common, "steps": 2})
    mim_seconds, plain_seconds = [], []
    for _ in range(2):  # interleaved, best of two: drift in the machine's speed hits both
        mim_seconds.append(mim_finetune(build_model(arch, 10), data, batch_size=batch, k=k,
                                        **common).seconds)
        plain_seconds.append(pretrain(build_model(arch, 10), data, batch_size=2 * batch,
                                      id_augment="none", schedule="constant", **common).seconds)
    mim, plain = min(mim_seconds), min(plain_seconds)
    ratio = mim / plain
    # MIM's own work per step, timed alone: on a shared CPU the two whole steps differ by
    # +-10% from run to run, far more than this, so the bound below is the stable figure
    x = torch.randn(batch, 3, 32, 32, device=device) * 0.5
    gen = torch.Generator(device=device).manual_seed(0)
    aug = PostMixAugment(p=1.0)
    own = _timed(lambda: aug(multi_input_mixup(x, k, generator=gen), generator=gen), device,
                 5 if quick else 20)
    bound = 1 + own / (plain / steps)
    name = architecture_display(arch)
    target = 1.05 if arch == "wrn40_2" else 1.1
    epoch = 50_000 // batch + 1  # steps of one CIFAR-10 epoch at this batch
    return [
        _row(f"(b) MIM step (B ID + B mixed), {name}", mim / steps * 1e3, "ms"),
        _row(f"(b) plain step on 2B images, {name}", plain / steps * 1e3, "ms"),
        _row(f"(b) one MIM epoch of CIFAR-10 ({epoch} steps, from {steps}), {name}",
             mim / steps * epoch, "s"),
        _row("(b) MIM step / plain step", ratio, "ratio", f"<= {target}", ratio <= target),
        _row("(b) MIM's own work per step (mixing + augmentation)", own * 1e3, "ms"),
        _row("(b) 1 + own work / plain step", bound, "ratio", f"<= {target}", bound <= target),
    ]


def mixing_methods(device: torch.device, batch: int, k: int, quick: bool) -> list[dict]:
    """The mix as mimlib computes it (gather the k members, mean) against the same mix as one
    matrix product with a k-hot mixing matrix (dense, and sparse): same draws, same result."""
    x = torch.randn(batch, 3, 32, 32, device=device) * 0.5
    flat = x.reshape(batch, -1)

    def mixing_matrix(layout: str) -> torch.Tensor:
        index = mixing_indices(batch, k, generator=torch.Generator(device=device).manual_seed(0),
                               device=device)  # (k, n): column i holds the members of mix i
        rows = torch.arange(batch, device=device).repeat(k)
        values = torch.full((k * batch,), 1.0 / k, device=device)
        m = torch.sparse_coo_tensor(torch.stack([rows, index.reshape(-1)]), values,
                                    (batch, batch), check_invariants=False).coalesce()
        return m if layout == "sparse" else m.to_dense()

    reps = 20 if quick else 200
    gen = torch.Generator(device=device)
    gather = _timed(lambda: multi_input_mixup(x, k, generator=gen.manual_seed(0)), device, reps)
    dense = _timed(lambda: mixing_matrix("dense") @ flat, device, reps)
    sparse = _timed(lambda: torch.sparse.mm(mixing_matrix("sparse"), flat), device, reps)
    same = (mixing_matrix("dense") @ flat).reshape_as(x)
    diff = float((same - multi_input_mixup(x, k, generator=gen.manual_seed(0))).abs().max())
    return [
        _row(f"(f) mixing, gather + mean (mimlib), batch {batch}, k {k}", gather * 1e3, "ms"),
        _row("(f) mixing, dense k-hot matrix product", dense * 1e3, "ms"),
        _row("(f) mixing, sparse k-hot matrix product", sparse * 1e3, "ms"),
        _row("(f) gather time / best matrix product", gather / min(dense, sparse), "ratio"),
        _row("(f) largest difference between the two mixes", diff, "abs"),
    ]


def detector_ratio(device: torch.device, quick: bool) -> list[dict]:
    n = 2000 if quick else (20000 if device.type == "cuda" else 5000)
    model = wrn40_2(10).to(device).eval()
    fit_set, test_set = _random_set(n, 10, 1), _random_set(n, 10, 2)
    extract(model, test_set, device=str(device))  # warm-up
    start = time.perf_counter()
    fit_reps = extract(model, fit_set, device=str(device))
    reps = extract(model, test_set, device=str(device))
    _sync(device)
    forward = time.perf_counter() - start
    names = tuple(d for d in TABLE1_DETECTORS if d != "ODIN")
    start = time.perf_counter()
    fitted = FittedDetectors(names, model, fit_reps, DetectorOptions(), device=str(device))
    for name in names:
        fitted.score(name, reps)
    detectors = time.perf_counter() - start
    ratio = (forward + detectors) / forward
    return [
        _row(f"(c) forward pass, {2 * n} images (fit + test set)", forward, "s"),
        _row(f"(c) fit + score {len(names)} detectors on cached features", detectors, "s"),
        _row("(c) (forward + all detectors) / forward", ratio, "ratio", "<= 1.5", ratio <= 1.5),
    ]


def training_throughput(device: torch.device, batch: int, quick: bool,
                        compile_model: bool) -> list[dict]:
    steps = 3 if quick else (100 if device.type == "cuda" else 20)
    data = _random_set(max(8 * batch, 4096), 10)
    pretrain(wrn40_2(10), data, steps=5, batch_size=batch, device=str(device),
             compile=compile_model)  # warm-up / compilation
    run = pretrain(wrn40_2(10), data, steps=steps, batch_size=batch, device=str(device),
                   compile=compile_model)
    rate = steps * batch / run.seconds
    target = 50000 if device.type == "cuda" else None
    return [_row(f"(d) WRN-40-2 training, batch {batch}"
                 + (", torch.compile" if compile_model else ""), rate, "images/s",
                 ">= 50000 (H200, bf16)" if target else "", None if target is None
                 else rate >= target)]


def cpu_peak(flops_per_cycle: float | None = None) -> dict:
    """This CPU's stated peak: cores x clock x FP32 FLOP per cycle per core (two FMA pipes of
    its vector width: 32 on AMD Zen 4, whose AVX-512 runs on two 256-bit pipes; 64 on Intel
    server cores with two 512-bit FMA units; 32 with AVX2 + FMA), and twice that in bf16 where
    AVX-512 BF16 (one bf16 pair per fp32 lane) or AMX is present. The clock is what
    /proc/cpuinfo reports (a virtual machine reports the nominal clock; boost may be higher)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((l.split(":", 1)[1].split() for l in info.splitlines()
                      if l.startswith("flags")), []))
    mhz = [float(l.split(":", 1)[1]) for l in info.splitlines() if l.startswith("cpu MHz")]
    amd = "AuthenticAMD" in info
    if flops_per_cycle is None:
        flops_per_cycle = (32 if amd else 64) if "avx512f" in flags else (
            32 if {"avx2", "fma"} <= flags else 8)
    cores = torch.get_num_threads()
    clock = max(mhz) / 1e3 if mhz else float("nan")
    fp32 = cores * clock * flops_per_cycle
    bf16 = fp32 * (2 if flags & {"avx512_bf16", "amx_bf16"} else 1)
    return {"cores": cores, "clock_ghz": clock, "fp32_flop_per_cycle": flops_per_cycle,
            "vector": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other",
            "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"}),
            "peak_gflops_fp32": fp32, "peak_gflops_bf16": bf16}


def numerics(device: torch.device, arch: str, quick: bool, peak: dict,
             eval_batches: tuple[int, ...] = (128, 256, 1024),
             compile_model: bool = False) -> list[dict]:
    """A training step (batch 256, SGD) and an evaluation forward pass of ``arch`` in each
    precision x memory layout (and, with ``compile_model``, through torch.compile's inductor),
    and the forward at several evaluation batch sizes, in ms and in GFLOP/s (FLOPs counted by
    torch's FlopCounterMode) against this CPU's peak."""
    from torch.utils.flop_counter import FlopCounterMode

    from mimlib.device import autocast

    repeats = 2 if quick else 6
    rows = []
    gen = torch.Generator().manual_seed(0)
    x256 = torch.randn(256, 3, 32, 32, generator=gen).to(device)
    y256 = torch.randint(0, 10, (256,), generator=gen).to(device)
    name = architecture_display(arch)

    def flops(fn: Callable[[], object]) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    counted: dict[tuple[str, str], float] = {}
    variants = [(p, layout, False) for p in ("fp32", "bf16")
                for layout in ("contiguous", "channels_last")]
    if compile_model:
        variants += [("fp32", "channels_last", True), ("bf16", "channels_last", True)]
    for precision, layout, compiled in variants:
        if precision == "bf16" and not peak["bf16_instructions"] and device.type == "cpu":
            continue  # emulated bf16: slower than fp32, nothing to measure
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        eager = build_model(arch, 10).to(device).to(memory_format=fmt)
        model = torch.compile(eager) if compiled else eager
        opt = torch.optim.SGD(eager.parameters(), lr=1e-3, momentum=0.9)
        x = x256.contiguous(memory_format=fmt)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = torch.nn.functional.cross_entropy(model(x), y256)
            loss.backward()
            opt.step()

        def forward() -> None:
            with torch.no_grad(), autocast(device, precision):
                model(x)

        peak_now = peak[f"peak_gflops_{precision}"]
        label = f"{precision}, {layout}" + (", torch.compile" if compiled else "")
        for what, fn in (("training step", step), ("forward", forward)):
            if compiled:  # the eager variant's FLOPs (the same arithmetic); compile first
                fn(), fn()
            else:
                counted[precision, what] = flops(fn)
            work = counted[precision, what]
            seconds = min(_timed(fn, device, 1) for _ in range(repeats))
            rate = work / seconds / 1e9
            rows.append(_row(f"(g) {name} {what}, batch 256, {label}", seconds * 1e3, "ms"))
            rows.append(_row(f"(g) {name} {what}, {label}: GFLOP/s "
                             f"(of peak {peak_now:.0f})", rate, "GFLOP/s",
                             f"{rate / peak_now:.0%} of peak"))
    model = build_model(arch, 10).to(device).eval()
    for batch in eval_batches:
        xb = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
        with torch.no_grad():
            seconds = min(_timed(lambda: model(xb), device, 1) for _ in range(repeats))
        rows.append(_row(f"(g) {name} forward, fp32, contiguous, eval batch {batch}",
                         batch / seconds, "images/s"))
    return rows


def _row(measure: str, value: float, unit: str, target: str = "",
         ok: bool | None = None) -> dict:
    return {"measure": measure, "value": float(value), "unit": unit, "target": target, "ok": ok}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke check)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--arch", default="wrn40_2", help="the model of (b), e.g. resnet20 "
                        "(the cifar10-cpu profile's)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timing in (b)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c", "d", "f", "g"])
    parser.add_argument("--flops-per-cycle", type=float, default=None, help="FP32 FLOP per "
                        "cycle per core of this CPU, if the detected value is wrong")
    parser.add_argument("--out", default=None, help="JSON file (default: "
                        "results/benchmark/<device>.json, which the runtime chapter reads)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows: list[dict] = []
    sections = {"a": lambda: mix_augment(device, args.batch_size, args.k, args.quick),
                "b": lambda: step_ratio(device, args.batch_size, args.k, args.quick, args.arch,
                                        args.steps),
                "c": lambda: detector_ratio(device, args.quick),
                "d": lambda: training_throughput(device, args.batch_size, args.quick, False),
                "f": lambda: mixing_methods(device, args.batch_size, args.k, args.quick),
                "g": lambda: numerics(device, args.arch, args.quick, peak,
                                      compile_model=args.compile)}
    peak = cpu_peak(args.flops_per_cycle) if device.type == "cpu" else {}
    if device.type != "cpu":
        del sections["g"]  # the ratio to a stated peak is this CPU's measure
    if args.compile:
        sections["e"] = lambda: training_throughput(device, args.batch_size, args.quick, True)
    for key, section in sections.items():
        if key not in args.skip:
            new = section()
            rows += new
            for row in new:
                print(_format(row), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    result = {"device": f"{device.type}: {name or platform.machine()}",
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "git": git_revision(), "quick": args.quick, "batch_size": args.batch_size,
              "k": args.k, "arch": args.arch, "peak": peak, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "rows": rows}
    slug = "".join(c if c.isalnum() else "-" for c in result["device"].lower()).strip("-")
    out = Path(args.out or f"results/benchmark/{slug[:40]}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    print(f"\nwritten: {out}")
    return result


def _format(row: dict) -> str:
    flag = "" if row["ok"] is None else ("  ok" if row["ok"] else "  MISSED")
    return f"{row['measure']:58s} {row['value']:12.4g} {row['unit']:9s} {row['target']}{flag}"


if __name__ == "__main__":
    main()
