"""The ``mimlib`` command: reproduce the book, re-run one notebook, build the book.

    mimlib reproduce [--profile cifar10-cpu] [-p NAME VALUE ...] [--force] [--no-book]
    mimlib run NOTEBOOK [-p NAME VALUE ...] [--profile cifar10-cpu] [--force] [--no-book]
    mimlib parameters NOTEBOOK [-p NAME VALUE ...] [--profile cifar10-cpu]
    mimlib book
    mimlib profiles

The default profile is the real reproduction (CIFAR-10, a published ResNet-20, two CPU cores),
whose results are committed: without its data the book is built from them, with the data a
changed parameter recomputes what changed. ``--profile smoke`` computes the embedded synthetic
pipeline check from scratch. ``mimlib parameters`` prints what a notebook runs with in a
profile, as the YAML that ``papermill notebooks/NN_name.ipynb OUT.ipynb -f FILE`` takes. Errors
a user can cause end with a message and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .book_build import build_book
from ...errors import ConfigError, MimlibError
from .interrupt import Terminated, sigterm_as_interrupt
from ..book.pages import notebook_names, resolve_notebook
from ..book.profiles import load_profile, profile_names

#: The profile of ``mimlib reproduce`` and ``mimlib run`` when none is given.
DEFAULT_PROFILE = "cifar10-cpu"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimlib", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="the project root (holds notebooks/ and "
                        "_config.yml); default: the current folder")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="run every notebook with a profile and build the book")
    _common(rep)
    rep.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks")
    _parameters(rep, "for every notebook (typically setup.* and mim.*)")

    run = sub.add_parser("run", help="re-run one notebook (its result lands in the book)")
    run.add_argument("notebook", help="name or number, e.g. 07_ablation_k or 07")
    _parameters(run, "for this notebook")
    _common(run)

    par = sub.add_parser("parameters", help="print a notebook's parameters in a profile as "
                         "YAML, for papermill -f (the template run with that profile)")
    par.add_argument("notebook", help="name or number, e.g. 07_ablation_k or 07")
    _parameters(par, "for this notebook")
    par.add_argument("--profile", default=DEFAULT_PROFILE, help="parameter profile "
                     f"(default: {DEFAULT_PROFILE})")

    red = sub.add_parser("rederive", help="recompute a Table-1 cell and a short fine-tuning of "
                         "a profile's committed store from the data, and compare")
    red.add_argument("--profile", default=DEFAULT_PROFILE, help="parameter profile "
                     f"(default: {DEFAULT_PROFILE})")
    red.add_argument("--one-epoch", action="store_true", help="also the main table's one-epoch "
                     "MIM run (minutes on a CPU)")
    red.add_argument("--machines", nargs="?", const="", metavar="FILE", help="on every CPU kind "
                     "and thread count of mimlib.companion.results.rederive.MACHINES, into FILE "
                     "(default: cross-machine.json beside the profile's store)")
    sub.add_parser("book", help="build the book from the executed notebooks (strict)")
    sub.add_parser("profiles", help="list the profiles")
    return parser


def _parameters(parser: argparse.ArgumentParser, scope: str) -> None:
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help=f"set a parameter {scope} (a YAML value; "
                        "dotted names reach into dicts: -p setup.arch resnet18)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="parameter profile "
                        f"(default: {DEFAULT_PROFILE}, the real reproduction from its committed "
                        "results; smoke: the synthetic pipeline check, computed from scratch)")
    parser.add_argument("--force", action="store_true", help="re-run notebooks even when their "
                        "parameters and inputs are unchanged")
    parser.add_argument("--no-book", action="store_true", help="do not build the book afterwards")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--allow-cpu", action="store_true", help="run a profile that needs a "
                        "GPU (paper, paper-scratch) on a machine without one")
    jobs = parser.add_argument_group("where the notebooks run (mimlib.companion.run.executors)")
    jobs.add_argument("--executor", choices=["local", "processes", "slurm"], default=None,
                      help="local: here, one after another (default); processes: worker "
                      "processes on this machine; slurm: jobs of a Slurm cluster (submitit)")
    jobs.add_argument("--workers", type=int, default=None, help="processes: at most this many "
                      "notebooks at once (default 2)")
    jobs.add_argument("--slurm-partition", default=None, help="slurm: the partition")
    jobs.add_argument("--slurm-gpus", type=int, default=None, help="slurm: GPUs per job (1)")
    jobs.add_argument("--slurm-cpus", type=int, default=None, help="slurm: CPUs per job (8)")
    jobs.add_argument("--slurm-time", type=int, default=None, metavar="MINUTES",
                      help="slurm: time limit per job (240)")
    jobs.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                      help="slurm: an extra sbatch option, e.g. account=my_lab (repeatable)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():  # a time-out's SIGTERM cleans up as Ctrl-C does
            return _dispatch(args)
    except MimlibError as err:
        print(f"mimlib: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print("mimlib: terminated (SIGTERM); finished results are kept in the store, and "
              "the run's temporary files are removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("mimlib: interrupted; finished results are kept in the store", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    # imported when a command runs, not for --help or a usage error: checking and running
    # notebooks imports torch and papermill, seconds of start-up
    from . import orchestrate as orc

    root = Path(args.root).resolve()
    if args.command == "profiles":
        for name in profile_names():
            print(f"{name:16s} {load_profile(name).get('description', '')}")
        return 0
    if args.command == "parameters":
        name = resolve_notebook(root, args.notebook)
        params = orc.notebook_parameters(root, name, load_profile(args.profile),
                                         [tuple(p) for p in args.parameter])
        print(orc.parameters_yaml(name, args.profile, params), end="")
        return 0
    if args.command == "book":
        print(build_book(root))
        return 0
    if args.command == "rederive":
        return _rederive(args)
    if args.command == "reproduce":
        names = ([resolve_notebook(root, n) for n in args.only] if args.only
                 else notebook_names(root))
    else:
        names = [resolve_notebook(root, args.notebook)]
    overrides = [tuple(p) for p in args.parameter]
    terminal = sys.stderr.isatty()  # bars on a terminal, plain lines in a log
    results = orc.run_notebooks(root, names, args.profile, overrides, force=args.force,
                                progress=terminal and not args.quiet,
                                announce=not terminal and not args.quiet,
                                allow_cpu=args.allow_cpu, executor=_executor(args))
    print(orc.summary(results))
    failed = [r.name for r in results if r.status == "failed"]
    if failed and not args.no_book:
        # a failed chapter lacks what the book cites, so a strict build fails too: say why here
        print(f"book: not built, {len(failed)} notebook(s) failed ({', '.join(failed)}); fix "
              "the cause above and run again (finished notebooks are skipped)", file=sys.stderr)
    elif not args.no_book:
        print(f"book: {build_book(root)}")
    return 1 if failed else 0


def _rederive(args: argparse.Namespace) -> int:
    """``mimlib rederive``: the check here (its summary as one JSON line), or per machine."""
    import json

    from ..results import rederive
    from ..results.setup import Setup

    settings = load_profile(args.profile)["common"]
    setup = Setup(**settings["setup"])
    if setup.results_only:
        raise ConfigError(f"the data of profile {args.profile} are absent here, and re-deriving "
                          "recomputes from them")
    if args.machines is not None:
        out = Path(args.machines or Path(settings["store"]).parent / "cross-machine.json")
        command = [sys.executable, "-m", "mimlib.companion.run.cli", "rederive", "--profile",
                   args.profile]
        rederive.measure_machines(command, out, args.profile)
        print(f"rederive: {out}")
        return 0
    one_epoch = dict(settings.get("mim") or {}) if args.one_epoch else None
    summary = rederive.measure(setup, settings["store"], args.profile, one_epoch)
    print(json.dumps(summary))
    return 1 if summary["beyond_tolerance"] else 0


def _executor(args: argparse.Namespace):  # -> mimlib.companion.run.executors.ExecutorSettings
    from .executors import executor_settings  # imports torch: see _dispatch

    options = {}
    for option in args.slurm_option:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm-option takes KEY=VALUE, got {option!r}")
        options[key] = value
    return executor_settings(load_profile(args.profile), args.executor, workers=args.workers,
                             partition=args.slurm_partition, gpus_per_job=args.slurm_gpus,
                             cpus_per_job=args.slurm_cpus, time_min=args.slurm_time,
                             sbatch=options or None)


if __name__ == "__main__":
    sys.exit(main())
