"""Reliability: killed runs resume cleanly, bad input stops early, runs repeat bit for bit.

The catalogue of every bad input and fault that mimlib guards against: the fault, what the user
sees, what stays untouched on disk ("keeps"), and the test that shows it (in this file unless
another is named). "Exit 2" is ``mimlib: error: <what to do>`` and exit status 2, before any
kernel starts.

Bad input
- unknown profile, data set, detector, architecture or protocol; k, aug_p, lr, epochs, steps,
  batch size or seeds out of range; an unparsable value: exit 2 naming the value and the
  choices. Keeps: store, book. test_a_catalogue_of_bad_inputs_stops_before_any_work
- ``-p profile paper`` (would label and export one profile's results as another's): exit 2,
  choose it with --profile. Keeps: store, book. (same test)
- absent folder, folder without images, truncated or other-class checkpoint, tampered
  download, data absent with downloads off, absent CUDA device: exit 2 naming the path or
  file. Keeps: store, book. (same test)
- an absent path without a pin, in a clone without ../shared (the default profile reads its
  committed results): exit 2 listing what is missing. Keeps: store, book.
  test_a_clone_without_the_data_refuses_an_absent_path_before_any_kernel
- a GPU profile without CUDA: exit 2, use a GPU or --allow-cpu.
  test_cli.py::test_a_profile_that_needs_a_gpu_stops_up_front_without_one

Bad data
- an image folder whose train/ and test/ hold other classes (an empty class folder, another
  name): DataError naming the classes only in each split.
  test_data.py::test_train_and_test_with_other_classes_are_refused
- an unreadable image: DataError naming the file. test_data.py::test_bad_ood_folders_are_errors
- a garbage or truncated MNIST ``.gz``: DataError naming the file.
  test_data.py::test_a_damaged_mnist_file_is_named
- pinned data with other bytes: DataError with both checksums. Keeps: the pinned results.
  test_pins.py::test_a_pin_names_the_data_without_the_files_and_guards_them
- an image of any Pillow mode (1, L, LA, P, RGBA, CMYK, LAB, 16-bit I;16 and its byte orders,
  I, F, ...): its 8-bit RGB colour, wide modes scaled from their range (a mid-grey 16-bit PNG
  is 128, not Pillow's clipped 255), alpha dropped keeping the stored colour, alike in ID
  folders, OOD folders and the paper's sets; an I or F image outside 0..65535 or [0, 1] (or
  not finite): DataError naming the file and mode. test_data.py::
  test_an_image_of_every_mode_loads_as_its_8_bit_rgb_colour,
  test_a_16_bit_grey_png_loads_as_mid_grey_in_id_folders_ood_folders_and_paper_sets,
  test_an_image_outside_its_modes_range_is_refused_naming_file_and_mode

The method's public functions
Each raises ConfigError (a setting or argument) or DataError (a data set's content) naming what
it was given and what to do, before any work; every numeric setting must be finite.
Tests in test_method_inputs.py unless another file is named.
- multi_input_mixup: k not a whole number >= 1, an unknown weight scheme, alpha not finite
  > 0 (inf gave all-NaN mixes), a non-tensor, empty or uint8 batch (normalise first).
  test_dirichlet_mixing_refuses_an_infinite_alpha,
  test_mixing_a_uint8_batch_says_to_normalise_it_first, test_mixing.py::test_invalid_k_is_an_error
- PostMixAugment: p outside [0, 1], nan/inf or negative jitter, hue outside [0, 0.5], degrees
  not finite >= 0 (inf gave black images), translate outside [0, 1], non-bool switches, an
  unknown interpolation, non-finite statistics; a batch that is not floating-point
  (N, 3, H, W): uint8, 3-d, 4 channels.
  test_augmentation_settings_that_give_nan_or_black_images_are_refused,
  test_augmenting_a_batch_of_the_wrong_dtype_or_shape_is_refused
- mim_finetune, oe_finetune, pretrain, adapt (and MIMConfig, OEConfig, PretrainConfig,
  AdaptConfig): an OOD set (labels -1) or labels outside the model's classes (DataError with
  the label range; was ``IndexError: Target -1 is out of bounds``), a model of other classes,
  a config of another kind, a non-module model, a non-ImageSet set or outlier set, hooks that
  are not functions; lr, epochs, steps, batch sizes, momentum, weight decay, lam, k, alpha,
  aug_p, seed not finite or out of range, non-bool switches, unknown choices. Keeps: the
  model's weights. test_fine_tuning_on_an_ood_set_says_it_has_no_labels,
  test_fine_tuning_on_labels_beyond_the_models_classes_is_refused,
  test_outlier_exposure_and_adaptation_check_their_sets_too,
  test_training_with_arguments_of_the_wrong_kind_says_what_it_takes,
  test_training_configs_refuse_non_finite_and_ill_typed_settings,
  test_train.py::test_bad_parameters_stop_before_any_work
- extract, FittedDetectors, DetectorOptions: batch_size not a whole number >= 1 (0 was
  ``range() arg 3 must not be zero``), a non-ImageSet, options or representations of another
  type, unknown detectors, odin_eps, odin_temperature, mahalanobis_eps, dice_p, vim_d not
  finite or out of range, features_as_logits given as one string, a fit set without some
  class for class Gaussians. test_extract_refuses_a_batch_size_that_is_not_a_whole_number,
  test_extract_says_it_takes_an_image_set, test_fitted_detectors_check_their_arguments,
  test_detector_options_refuse_non_finite_and_ill_typed_values, test_detectors.py::
  test_a_fit_set_without_some_class_names_the_class_for_class_gaussians
- ood_metrics: empty, NaN or non-numeric scores, tpr not finite in (0, 1]; bf16 scores (one
  of extract's precisions) are read, not refused.
  test_metrics_of_bf16_scores_are_those_of_the_same_scores_in_float32,
  test_metrics_of_scores_that_are_not_numbers_say_so, test_metrics_refuse_a_non_finite_tpr
- load_id, load_ood, ImageSet, DataOptions, normalize: an unknown split or set, a negative or
  fractional seed or subset limit, labels that are not int64 (N,), a non-bool download flag;
  images that are not uint8 or float (N, 3, H, W) (a single image came back as a batch of one).
  test_loading_an_ood_set_with_a_bad_seed_is_refused,
  test_a_subset_limit_must_be_a_whole_number,
  test_an_image_set_refuses_labels_that_are_not_int64,
  test_data_options_refuse_a_download_flag_that_is_not_a_bool,
  test_normalize_refuses_what_is_not_a_uint8_or_float_rgb_batch
- the architectures (SmallCNN, WideResNet, wrn40_2, CifarResNet, ResNet18, DenseNet,
  build_model): a class count that is not a whole number >= 2.
  test_every_architecture_refuses_a_class_count_that_is_not_a_whole_number_above_one

Faults while running
- a non-finite loss: the chapter fails, NonFiniteLossError in book/failed/. Keeps: store,
  last good page and exports, the chapter's usage record.
  test_a_failed_run_writes_nothing_and_leaves_the_last_good_page
- out of device memory: DeviceMemoryError, lower batch_size.
  test_running_out_of_device_memory_says_what_to_do
- a run killed (SIGKILL) at any point: the next run resumes, finished steps skipped. Keeps:
  every complete entry; no half entry is listed.
  test_a_killed_reproduction_resumes_and_leaves_nothing_half_written
- a read-only store: the page; a note when its usage record could not be updated. Keeps: the
  store. test_a_read_only_store_does_not_fail_a_run_that_succeeded
- a what-if run (``-p ks '[1, 5]'``): the page with those parameters. Keeps: results/, usage
  records included. test_a_what_if_run_leaves_the_committed_results_unchanged
- a book that links a missing export: the build fails saying to re-run with --force.
  test_cli.py::test_a_book_that_links_a_missing_export_fails_with_what_to_do
- a what-if run asking a stored run for a curve it does not hold (``-p eval_every 3``): the run
  is repeated once, its curve stored as an entry of its own (kind ``curve``), its weights in
  ROOT/.recomputed when the entry keeps none. Keeps: the stored entry, byte for byte.
  test_store_safety.py::test_a_richer_curve_never_rewrites_the_stored_entry
- two runs at once on one project (``mimlib run 03 -p mim.k 3`` while another chapter runs):
  each finished chapter is recorded under the manifest's lock in the manifest as it is then,
  so a later run re-runs a page made with other parameters. Keeps: both runs' records.
  test_store_safety.py::test_two_runs_at_once_keep_each_others_manifest_records
- a run stopped by SIGTERM (a Slurm time-out, ``timeout``): ``mimlib: terminated``, exit 143,
  its running page, staging folder and usage file removed. Keeps: the last good page, the
  store. test_store_safety.py::test_a_terminated_run_removes_its_temporary_files
- what a killed run left beside the pages (``.NN.HOST-PID.running.ipynb``, ``.staging-*`` and
  its ``.usage``): removed by the next run on that host once that process is dead. Keeps: the
  files of runs alive and of other hosts.
  test_store_safety.py::test_the_next_run_removes_what_dead_runs_left_and_nothing_else

A shared or damaged store
- a job killed while holding a key's lock: the next job computes the key.
  test_store.py::test_a_worker_killed_while_holding_the_lock_blocks_nobody
- two jobs asking for one key: one computes, both get its entry.
  test_store.py::test_two_processes_asking_for_one_key_compute_it_once
- a job on another host (or PID namespace) writing while this one writes another key:
  nothing. Keeps: its work in progress.
  test_store.py::test_a_write_never_removes_the_work_in_progress_of_another_host
- temporary folders of killed writers: removed by their key's next writer. Keeps: other keys'
  temporary folders. test_store.py::test_a_keys_writer_removes_its_dead_temporaries_and_no_others
- an entry folder without record.json (a partial copy): computed once and replaced, with a
  RuntimeWarning. test_store.py::test_a_folder_without_its_record_is_computed_once_and_replaced
- a half-written ``.tmp-*`` folder holding a record: not listed (the runtime page is fine).
  test_store.py::test_listing_skips_temporary_folders_and_names_a_damaged_record
- a corrupt, ``null`` or foreign record.json, a deleted, truncated or garbage scores.npz:
  StoreError naming the entry and file: restore a committed entry with ``git checkout --
  PATH``, else delete it and re-run. Keeps: the entry. test_store.py::
  test_a_tampered_entry_is_refused, test_a_record_holding_null_is_named_with_how_to_restore_it,
  test_a_damaged_scores_file_is_named
- a record.json without its result (provenance, environment): StoreError naming the entry
  and how to restore it, not a KeyError later.
  test_store_safety.py::test_a_record_without_its_result_is_named
- a forced re-run that fails, in its computation or while writing (a full disk): the error.
  Keeps: the stored entry. test_store.py::test_get_or_compute_computes_once,
  test_store_safety.py::test_a_forced_recompute_whose_write_fails_keeps_the_stored_entry
- a forced re-run killed at any step (before the old entry is moved aside, before the new one
  is renamed in, before the old one is removed): one complete entry is found, old or new, and
  the key's next writer settles the folder.
  test_store_safety.py::test_a_forced_recompute_killed_at_any_step_leaves_one_complete_entry
- a read-only store (a shared read-only mount) lacking an entry a run needs: StoreError
  naming the store and the entry, and where new results can go (``-p store PATH``,
  ``MIMLIB_RESULTS``, ``Store(PATH)``), before any work. Keeps: the store; reading works.
  test_store_safety.py::test_a_read_only_store_is_read_and_says_where_new_results_go
- reading the model of an entry that keeps no weights (committed runs): the weights are
  trained again into ROOT/.recomputed, once; a RuntimeWarning if they do not reproduce the
  stored training log. Keeps: the entry, byte for byte (record, curve, timestamp).
  test_reading_a_model_never_rewrites_its_stored_entry
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mimlib import build_model, mim_finetune
from mimlib.companion.run import cli
from mimlib.checkpoints import atomic_torch_save, load_checkpoint
from mimlib.data import load_id
from mimlib.device import set_deterministic
from mimlib.errors import DeviceMemoryError
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.results.store import Store

ROOT = Path(__file__).resolve().parents[1]
FAST = ["-p", "setup.pretrain_epochs", "2", "-p", "setup.train_limit", "1500",
        "-p", "setup.test_limit", "200", "-p", "setup.ood_limit", "200",
        "-p", "mim.steps", "20"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's notebooks with its own store, cache and exports."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    monkeypatch.setenv("MIMLIB_RESULTS", str(root / "store"))
    monkeypatch.setenv("MIMLIB_EXPORTS", str(root / "exports"))
    return root


def _store_is_sound(store_root: Path) -> int:
    """Every entry is complete and loadable; returns the number of entries."""
    if not store_root.exists():
        return 0
    entries = Store(store_root).entries()
    for entry in entries:
        assert Store(store_root).get(entry.record["kind"], entry.record["config"]) is not None
        for name in ("scores.npz", "model.pt"):
            if (entry.path / name).exists():
                if name == "model.pt":
                    torch.load(entry.path / name, weights_only=True)
                else:
                    entry.arrays()
    for folder in store_root.iterdir():
        if folder.name in (".locks", ".recomputed"):  # lock files; weights trained again
            continue
        if folder.name == ".usage":  # what each chapter's last run used: whole JSON files
            assert all(p.suffix == ".json" and json.loads(p.read_text())["entries"]
                       for p in folder.iterdir()), list(folder.iterdir())
            continue
        for path in folder.iterdir():
            assert path.name.startswith(".tmp-") or (path / "record.json").is_file(), path
    return len(entries)


@pytest.mark.slow
def test_a_killed_reproduction_resumes_and_leaves_nothing_half_written(project: Path) -> None:
    cmd = [sys.executable, "-m", "mimlib.companion.run.cli", "--root", str(project), "reproduce", "--only",
           "02", "03", "--profile", "smoke", "--no-book", "--quiet", *FAST]
    for delay in (3.0, 9.0, 16.0, 24.0):  # kernel start, pretraining, fine-tuning, writing
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, kernels included
        proc.wait()
        time.sleep(1.0)
        _store_is_sound(project / "store")
        manifest = project / "book" / "executed" / "manifest.json"
        if manifest.exists():
            json.loads(manifest.read_text())  # never half written
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    # the pretrained and the fine-tuned model, the base's MSP scores and per-class accuracy
    assert _store_is_sound(project / "store") == 4
    kinds = sorted(e.record["kind"] for e in Store(project / "store").entries())
    assert kinds == ["analysis", "finetune", "pretrain", "scores"]
    assert not list((project / "store").glob("*/.tmp-*"))  # dead writers were cleaned up
    pretrained = Store(project / "store").entries("pretrain")
    assert len(pretrained) == 1  # killed runs never produced a second, partial model
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stdout.count("skipped") == 2


def _run(project: Path, *args: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        profile = [] if "--profile" in args else ["--profile", "smoke"]
        code = cli.main(["--root", str(project), *args, *profile, "--no-book", "--quiet"])
    return code, err.getvalue()


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    text_only = tmp / "text_only"
    text_only.mkdir()
    (text_only / "notes.txt").write_text("no images here")
    good = build_model("small_cnn", 6)
    atomic_torch_save(good.state_dict(), tmp / "good.pt")
    (tmp / "truncated.pt").write_bytes((tmp / "good.pt").read_bytes()[:2000])
    atomic_torch_save(build_model("small_cnn", 10).state_dict(), tmp / "ten_classes.pt")
    cache = tmp / "data" / "checkpoints"
    cache.mkdir(parents=True)
    from pytorch_ood.model import get_model_info

    entry = get_model_info("wrn-40-2/cifar10/crossentropy")
    (cache / entry.file_name).write_bytes(b"tampered download")
    return [
        (["reproduce", "--profile", "nope"], "unknown profile"),
        (["run", "02", "-p", "setup.id_data", "imagenet"], "unknown ID data set"),
        (["run", "02", "-p", "setup.ood_sets", "[fashion_mnist]"], "unknown OOD"),
        (["run", "04", "-p", "detectors", "[MSP, OpenMax]"], "unknown detector"),
        (["run", "02", "-p", "setup.arch", "vgg16"], "unknown architecture"),
        (["run", "02", "-p", "setup.protocol", "strict"], "unknown protocol"),
        (["run", "03", "-p", "mim.k", "0"], "k (the number of images per mix)"),
        (["run", "03", "-p", "mim.aug_p", "1.5"], "aug_p"),
        (["run", "08", "-p", "ps", "[-0.5]"], "probabilities in [0, 1]"),
        (["run", "03", "-p", "mim.lr", "-0.001"], "lr must be a finite number > 0"),
        (["run", "03", "-p", "mim.epochs", "-1"], "epochs (steps, when given, override it) must be a finite number > 0"),
        (["run", "03", "-p", "mim.steps", "0"], "steps must be a whole number >= 1"),
        (["run", "03", "-p", "mim.batch_size", "0"], "batch_size"),
        (["run", "02", "-p", "setup.pretrain_epochs", "-5"], "pretrain_epochs"),
        (["run", "02", "-p", "setup.id_data", f"folder:{tmp / 'absent'}"], "does not exist"),
        (["run", "02", "-p", "setup.ood_sets", f"[crop:{empty}]"], "holds no image files"),
        (["run", "02", "-p", "setup.ood_sets", f"[resize:{text_only}]"], "holds no image files"),
        (["run", "02", "-p", "setup.base", f"checkpoint:{tmp / 'truncated.pt'}"],
         "corrupt or truncated"),
        (["run", "02", "-p", "setup.base", f"checkpoint:{tmp / 'ten_classes.pt'}"],
         "another number of classes"),
        (["run", "02", "-p", "setup", "{id_data: cifar10, arch: wrn40_2, base: published, "
          f"download: true, data_root: '{tmp / 'data'}', weights_dir: '{cache}'}}"],
         "fails its SHA-256 check"),
        (["run", "02", "-p", "setup.id_data", "cifar10", "-p", "setup.download", "false",
          "-p", "setup.data_root", str(tmp / "nodata")], "downloads are switched off"),
        (["run", "11", "-p", "seeds", "[-1]"], "whole numbers >= 0"),
        (["run", "07", "-p", "ks", "[1, 2"], "cannot parse"),
        (["run", "02", "-p", "setup.device", "cuda:7"], "cuda"),
        (["run", "02", "-p", "profile", "paper"], "choose a profile with --profile"),
    ]


def test_a_catalogue_of_bad_inputs_stops_before_any_work(project: Path, tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    assert len(cases) >= 20
    for args, message in cases:
        if "cuda" in message and torch.cuda.device_count() > 7:
            continue
        code, err = _run(project, *args)
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert err.startswith("mimlib: error:"), err
    assert not (project / "store").exists()  # nothing was written to the store
    assert not (project / "book").exists()  # and no notebook ran


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_a_failed_run_writes_nothing_and_leaves_the_last_good_page(project: Path) -> None:
    """A non-finite loss fails its notebook: nothing lands in the store, and the page and
    exports of the last good run stay as they were (the failure is kept in book/failed/)."""
    # the chapter's cost record of an earlier run with the profile's own parameters
    Store(project / "store").record_usage("02_pretraining", ["pretrain/earlier"])
    usage = (project / "store" / ".usage" / "02_pretraining.json").read_bytes()
    code, err = _run(project, "run", "02", *FAST)
    assert code == 0, err
    good_page = (project / "book" / "executed" / "02_pretraining.ipynb").read_bytes()
    good_exports, entries = _files(project / "exports"), _store_is_sound(project / "store")
    assert good_exports and entries
    # a run with changed parameters (-p) does not replace the chapter's cost record
    assert (project / "store" / ".usage" / "02_pretraining.json").read_bytes() == usage
    code, _ = _run(project, "run", "02", *FAST, "-p", "setup.pretrain_lr", "1e30")
    assert code == 1  # the notebook ran and failed; the summary names it
    failed = (project / "book" / "failed" / "02_pretraining.ipynb").read_text()
    assert "NonFiniteLossError" in failed and "lower the learning rate" in failed
    assert (project / "book" / "executed" / "02_pretraining.ipynb").read_bytes() == good_page
    assert _files(project / "exports") == good_exports  # no stray or emptied file
    assert _store_is_sound(project / "store") == entries
    assert (project / "store" / ".usage" / "02_pretraining.json").read_bytes() == usage
    assert not [p for p in (project / "book" / "executed").iterdir() if p.name.startswith(".")]


def test_running_out_of_device_memory_says_what_to_do(monkeypatch) -> None:
    data = load_id("synthetic", "train").subset(64)

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr("mimlib.train.random_crop_flip", boom)
    with pytest.raises(DeviceMemoryError, match="lower batch_size"):
        mim_finetune(build_model("small_cnn", 6), data, steps=1, id_augment="crop_flip",
                     device="cpu")


@pytest.mark.slow
def test_the_same_seed_gives_bit_identical_metrics_on_the_cpu(tmp_path: Path) -> None:
    setup = Setup(ood_sets=("synthetic_textures", "gaussian"), pretrain_epochs=1,
                  train_limit=800, test_limit=200, ood_limit=200, device="cpu")
    results = []
    for i in range(2):
        exp = Experiment(setup, Store(tmp_path / f"store{i}"))
        base = exp.base_model()
        run = exp.mim_model(base, steps=10, k=5, lr=0.01)
        ev = exp.evaluate(run, ("MSP", "Energy", "ViM"))
        results.append((ev.rows, ev.scores, run.log))
    assert results[0][0] == results[1][0]  # every metric, exactly
    for key in results[0][1]:
        assert np.array_equal(results[0][1][key], results[1][1][key])
    assert results[0][2] == results[1][2]
    other = Experiment(dataclasses.replace(setup, seed=1), Store(tmp_path / "seed1"))
    assert other.mim_model(other.base_model(), steps=10, k=5, lr=0.01).log != results[0][2]


def test_deterministic_mode_switches_the_documented_flags() -> None:
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        # every model's forward and backward is allowed under deterministic algorithms
        model = build_model("wrn40_2", 10)
        model(torch.randn(2, 3, 32, 32)).sum().backward()
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_every_stored_result_carries_its_provenance(tmp_path: Path) -> None:
    setup = Setup(ood_sets=("gaussian",), pretrain_epochs=1, train_limit=300, test_limit=100,
                  ood_limit=100, device="cpu")
    exp = Experiment(setup, Store(tmp_path), profile="unit-test")
    exp.evaluate(exp.base_model())
    for entry in exp.store.entries():
        prov, env = entry.record["provenance"], entry.record["environment"]
        assert prov["profile"] == "unit-test" and prov["setup"]["id_data"] == "synthetic"
        assert set(prov["data_sha256"]) == {"id_train", "id_test", "gaussian"}
        assert env["versions"]["torch"] == torch.__version__ and "git" in env
    model_file = exp.store.entries("pretrain")[0].file("model.pt")
    load_checkpoint(build_model("small_cnn", 6), model_file)  # weights_only round trip
    # experiments derived from a page's experiment (seeds, architectures, quirks) keep its
    # store and profile, so their results say which profile made them too
    derived = exp.derive(dataclasses.replace(setup, seed=1))
    assert derived.store is exp.store and derived.profile == "unit-test"
    derived.base_model()
    pretrained = exp.store.entries("pretrain")
    assert len(pretrained) == 2
    assert {e.record["provenance"]["profile"] for e in pretrained} == {"unit-test"}


def test_a_clone_without_the_data_refuses_an_absent_path_before_any_kernel(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ../shared the default profile reads its committed results; a path given
    without a pin is still needed (its files name it in store keys) and is checked first."""
    monkeypatch.chdir(project)  # the profile's ../shared/... paths are absent from here
    code, err = _run(project, "run", "02", "-p", "setup.id_data", "folder:/nonexistent",
                     "--profile", "cifar10-cpu")
    assert code == 2, err
    assert "folder:/nonexistent: /nonexistent (in 'folder:/nonexistent') does not exist" in err
    assert "nothing was fetched or run" in err
    assert not (project / "book").exists()  # no kernel started


def test_reading_a_model_never_rewrites_its_stored_entry(tmp_path: Path) -> None:
    """Committed runs keep no weights: reading the model trains it again into the store's
    ROOT/.recomputed (once), bit for bit on the CPU, and leaves the entry as committed."""
    setup = Setup(ood_sets=("gaussian",), pretrain_epochs=1, train_limit=300, test_limit=100,
                  ood_limit=100, device="cpu")
    exp = Experiment(setup, Store(tmp_path), profile="committed")
    run = exp.mim_model(exp.base_model(), steps=4, k=3, eval_every=2)  # with its curve
    trained = {k: v.clone() for k, v in run.model.state_dict().items()}
    entry = exp.store.get("finetune", run.recipe)
    (entry.path / "model.pt").unlink()  # as committed
    committed = {p.name: p.read_bytes() for p in entry.path.iterdir()}
    assert json.loads(committed["record.json"])["result"]["curve"]["eval_every"] == 2

    reader = Experiment(setup, Store(tmp_path), profile="another")
    again = reader.mim_model(reader.base_model(), steps=4, k=3)  # no curve asked for
    state = again.model.state_dict()
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    assert {p.name: p.read_bytes() for p in entry.path.iterdir()} == committed
    weights = tmp_path / ".recomputed" / "finetune" / entry.path.name / "model.pt"
    assert weights.is_file()
    assert [e.path for e in Store(tmp_path).entries("finetune")] == [entry.path]
    stamp = weights.stat().st_mtime_ns
    third = Experiment(setup, Store(tmp_path)).mim_model(reader.base_model(), steps=4, k=3)
    assert all(torch.equal(third.model.state_dict()[k], trained[k]) for k in trained)
    assert weights.stat().st_mtime_ns == stamp  # read, not trained a third time

    # weights trained again that do not reproduce the stored run are not used silently
    record = json.loads(committed["record.json"])
    record["result"]["log"][0]["loss_id"] += 0.5  # as if the run had been made elsewhere
    (entry.path / "record.json").write_text(json.dumps(record))
    shutil.rmtree(tmp_path / ".recomputed")
    fourth = Experiment(setup, Store(tmp_path)).mim_model(reader.base_model(), steps=4, k=3)
    with pytest.warns(RuntimeWarning, match="training logs differ"):
        fourth.model


def _committed_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default profile's store in a project without ../shared: chapter 07's 18 runs
    (6 k x 3 seeds), and papermill without a kernel (the page reads the runs it shows)."""
    import papermill as pm

    monkeypatch.chdir(project)
    store = Store(project / "results" / "cifar10-cpu" / "store")
    for k in (1, 2, 3, 5, 10, 20):
        for seed in (0, 1, 2):
            store.put("finetune", {"k": k, "seed": seed}, {"auroc": 0.5 + k / 100 + seed / 1000})

    def execute(source: str, executed: str, parameters: dict, **kwargs) -> None:
        read = Store(parameters["store"])
        for k in parameters["ks"]:
            for seed in parameters["seeds"]:
                assert read.get("finetune", {"k": k, "seed": seed}) is not None
        shutil.copy(source, executed)

    monkeypatch.setattr(pm, "execute_notebook", execute)
    return store.root


def _usage(store: Path) -> list[str]:
    return json.loads((store / ".usage" / "07_ablation_k.json").read_text())["entries"]


def test_a_what_if_run_leaves_the_committed_results_unchanged(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a chapter costs is what its run with the profile's own parameters used: a run with
    other parameters (-p ks '[1, 5]') reads the store and records nothing in it."""
    from mimlib.companion.run.orchestrate import run_notebooks

    store = _committed_project(project, monkeypatch)
    done = run_notebooks(project, ["07_ablation_k"], "cifar10-cpu", progress=False)
    assert [r.status for r in done] == ["ok"]
    assert len(_usage(store)) == 18
    committed = _files(project / "results")
    what_if = run_notebooks(project, ["07_ablation_k"], "cifar10-cpu", [("ks", "[1, 5]")],
                            progress=False)
    assert [r.status for r in what_if] == ["ok"]
    assert _files(project / "results") == committed  # git status --short results/: empty
    assert len(_usage(store)) == 18


def test_a_read_only_store_does_not_fail_a_run_that_succeeded(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A run on a read-only store writes its page: an unchanged usage record is not written
    at all, and one that would change stays as it was, with a note."""
    import errno

    from mimlib.companion.run.orchestrate import run_notebooks

    store = _committed_project(project, monkeypatch).resolve()
    run_notebooks(project, ["07_ablation_k"], "cifar10-cpu", progress=False)
    page = project / "book" / "executed" / "07_ablation_k.ipynb"

    def refuse(method):  # a read-only file system (the tests run as root, who ignores modes)
        def call(self: Path, *args, **kwargs):
            if self.is_relative_to(store):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return method(self, *args, **kwargs)
        return call

    def read_only_run() -> str:
        committed = _files(store)
        page.unlink()
        with monkeypatch.context() as patched:
            patched.setattr(Path, "write_text", refuse(Path.write_text))
            done = run_notebooks(project, ["07_ablation_k"], "cifar10-cpu", progress=False,
                                 force=True)
        assert [r.status for r in done] == ["ok"] and page.is_file()
        assert _files(store) == committed
        return capsys.readouterr().err

    assert "ran fine, but" not in read_only_run()  # the same entries: nothing to write
    (store / ".usage" / "07_ablation_k.json").write_text('{"entries": ["finetune/older"]}')
    assert "07_ablation_k ran fine, but which entries" in read_only_run()
