"""The presentation layer: the paper's numbers, comparisons, tables, figures and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mimlib.companion import analysis
from mimlib.companion.analysis import plots
from mimlib.errors import ConfigError
from mimlib.companion.results.runs import Evaluation
from mimlib.companion.book.session import download_link
from mimlib.companion.analysis.report import (compare_with_paper, label, markdown_table, paper_numbers,
                           save_figure, save_table, with_average)


def test_the_embedded_paper_numbers_are_complete_and_their_averages_add_up():
    paper = paper_numbers()
    t1 = paper[paper.table == "table1"]
    assert set(t1.id_dataset) == {"cifar10", "cifar100"}
    assert len(set(t1.method)) == 11  # MSP, the nine other baselines and MIM
    for (id_data, method), df in t1.groupby(["id_dataset", "method"]):
        sets = df[df.ood_dataset != "average"]
        assert len(sets) == 7, (id_data, method)
        average = df[df.ood_dataset == "average"].auroc.item()
        # the paper rounds to four digits; its averages are the plain means of the seven sets
        assert average == pytest.approx(sets.auroc.mean(), abs=6e-4), (id_data, method)
    mim = t1[(t1.method == "MIM") & (t1.ood_dataset == "average")].set_index("id_dataset")
    assert mim.auroc["cifar10"] == pytest.approx(0.9669)
    assert mim.auroc["cifar100"] == pytest.approx(0.8801)


def test_comparison_puts_the_paper_beside_ours_and_never_matches_other_sets():
    ours = pd.DataFrame([
        {"method": "MSP", "ood": "tinyimagenet_crop", "auroc": 0.9, "aupr_out": 0.8},
        {"method": "MSP", "ood": "synthetic_blends", "auroc": 0.7, "aupr_out": 0.6},
    ])
    merged = compare_with_paper(ours, "cifar10")
    assert merged.paper_auroc[0] == pytest.approx(0.9459)
    assert merged.diff_auroc[0] == pytest.approx(0.9 - 0.9459)
    assert merged.diff_aupr[0] == pytest.approx(0.8 - 0.931)
    assert np.isnan(merged.paper_auroc[1]) and np.isnan(merged.diff_auroc[1])
    assert compare_with_paper(ours, "synthetic").paper_auroc.isna().all()


def test_average_rows_are_unweighted_means_per_method():
    rows = pd.DataFrame({"method": ["a", "a", "b", "b"], "ood": ["x", "y", "x", "y"],
                         "auroc": [0.6, 0.8, 0.5, 1.0]})
    out = with_average(rows)
    avg = out[out.ood == "average"].set_index("method").auroc
    assert avg["a"] == pytest.approx(0.7) and avg["b"] == pytest.approx(0.75)
    assert len(out) == 8  # x and y, their group's mean (far-OOD: unknown sets) and the average


def test_means_are_per_group_and_noise_is_never_averaged_with_natural_images():
    rows = pd.DataFrame({"method": "MIM", "ood": ["tinyimagenet_crop", "tinyimagenet_resize",
                                                  "mnist", "gaussian", "blobs"],
                         "auroc": [0.80, 0.84, 0.95, 0.40, 0.60], "aupr_out": 0.5})
    means = with_average(rows).set_index("ood").auroc
    assert means["mean near-OOD"] == pytest.approx(0.82)
    assert means["mean far-OOD"] == pytest.approx(0.95)
    assert means["mean noise (OE paper)"] == pytest.approx(0.50)
    assert means["average"] == pytest.approx((0.80 + 0.84 + 0.95) / 3)  # natural sets only
    wide = analysis.wide_table(compare_with_paper(with_average(rows), "cifar10"), "auroc")
    assert list(wide.columns) == ["method", "tinyimagenet_crop", "tinyimagenet_resize", "mnist",
                                  "gaussian", "blobs", "mean near-OOD", "mean far-OOD",
                                  "mean noise (OE paper)"]  # no average beside other sets


def test_wide_table_and_agreement_report_the_distance_to_the_paper():
    rows = with_average(pd.DataFrame({
        "method": ["MSP", "MSP"], "ood": ["tinyimagenet_crop", "svhn"], "auroc": [0.95, 0.90],
        "aupr_out": [0.9, 0.9]}))
    cells = compare_with_paper(rows, "cifar10")
    wide = analysis.wide_table(cells, "auroc")
    assert list(wide.columns) == ["method", "tinyimagenet_crop", "svhn", "mean near-OOD",
                                  "mean far-OOD"]
    # an average over two of the paper's seven sets is not put beside the paper's own average
    assert "paper average" not in wide and "Δ average" not in wide
    paper = paper_numbers()
    seven = paper[(paper.table == "table1") & (paper.id_dataset == "cifar10")
                  & (paper.method == "MSP") & (paper.ood_dataset != "average")]
    ours = with_average(pd.DataFrame({"method": "MSP", "ood": seven.ood_dataset.to_numpy(),
                                      "auroc": seven.auroc.to_numpy() - 0.01, "aupr_out": 0.9}))
    full = analysis.wide_table(compare_with_paper(ours, "cifar10"), "auroc")
    assert full["paper average"].item() == pytest.approx(0.9126)
    assert full["average (paper's sets)"].item() == pytest.approx(0.9126 - 0.01, abs=1e-3)
    assert full["Δ average"].item() == pytest.approx(-0.01, abs=1e-3)
    agree = analysis.agreement(cells.assign(id_data="cifar10", protocol="faithful"))
    row = agree.iloc[0]
    assert row["cells"] == 2  # the average is not a cell of its own
    assert row["mean |Δ AUROC|"] == pytest.approx((abs(0.95 - 0.9459) + abs(0.90 - 0.9191)) / 2)
    assert row["within 0.01"] == pytest.approx(0.5)


def test_headline_puts_msp_the_best_baseline_and_mim_beside_the_paper():
    paper = paper_numbers()
    cells_c10 = paper[(paper.table == "table1") & (paper.id_dataset == "cifar10")
                      & (paper.ood_dataset != "average")]
    ours = cells_c10.rename(columns={"ood_dataset": "ood", "aupr": "aupr_out"})[
        ["method", "ood", "auroc", "aupr_out"]]
    collapsed = ours.assign(auroc=np.where(ours.method == "MIM", 0.5, ours.auroc))
    # a detector that is not in the paper, better than all: context, neither baseline nor rank
    newer = ours[ours.method == "MSP"].assign(method="KNN" + analysis.NOT_IN_PAPER, auroc=0.999)
    frames = [compare_with_paper(with_average(rows), "cifar10").assign(id_data="cifar10",
                                                                      protocol=protocol)
              for protocol, rows in (("faithful", pd.concat([ours, newer])),
                                     ("corrected", collapsed))]
    synthetic = with_average(ours.assign(ood="synthetic_" + ours.ood))
    frames.append(compare_with_paper(synthetic, "synthetic").assign(id_data="synthetic",
                                                                   protocol="corrected"))
    head = analysis.headline(pd.concat(frames, ignore_index=True)).set_index(["id_data",
                                                                             "protocol"])
    same = head.loc[("cifar10", "faithful")]
    assert same["MSP (paper)"] == pytest.approx(0.9126)
    assert same["MSP"] == pytest.approx(0.9126, abs=6e-4)  # mean of the paper's seven cells
    assert same["MIM (paper)"] == pytest.approx(0.9669)
    assert same["best baseline (paper)"] == "RMD 0.9358"
    assert same["best baseline"].startswith("RMD ")
    assert same["MIM rank"] == same["MIM rank (paper)"] == "1 of 11"
    worse = head.loc[("cifar10", "corrected")]
    assert worse["MIM"] == pytest.approx(0.5) and worse["MIM rank"] == "11 of 11"
    none = head.loc[("synthetic", "corrected")]
    assert np.isnan(none["MIM (paper)"]) and none["MIM rank (paper)"] == "—"
    assert none["best baseline (paper)"] == "—" and none["MIM rank"] == "1 of 11"


def test_markdown_tables_are_numbered_captioned_and_escape_their_cells():
    df = pd.DataFrame({"a|b": ["x|y", "z"], "v": [0.123456, np.nan]})
    text = markdown_table(df, "Caption", "tbl-x", "profile smoke")
    lines = text.splitlines()
    assert lines[0] == "~~~{table} Caption *(profile smoke)*"
    assert lines[1] == ":name: tbl-x"
    assert lines[3] == "| a\\|b | v |"
    assert lines[5] == "| x\\|y | 0.1235 |"
    assert lines[6] == "| z | — |"
    assert lines[-1] == "~~~"


def test_labels_mark_smoke_results_as_not_comparable():
    assert label("smoke", k=10).startswith("SMOKE PROFILE")
    assert label("paper", k=10, ood=list("abcdefg")) == "profile paper; k=10, ood=[7 items]"


def test_figures_are_saved_as_png_and_pdf_with_their_provenance_in_the_files(tmp_path,
                                                                             monkeypatch):
    from PIL import Image

    monkeypatch.setenv("MIMLIB_EXPORTS", str(tmp_path))
    spec = "profile cifar10-cpu; data=folder:cifar10-jpeg.tar.xz@c20cedc5, id=d88073ceb7"
    for profile in ("cifar10-cpu", "smoke"):
        fig = plots.sweep_bars(pd.DataFrame({"variant": ["no fine-tuning", "k=10"],
                                             "accuracy": [0.9, 0.88], "mean_auroc": [0.7, 0.8]}))
        assert len(fig.axes[0].patches) == 2
        paths = save_figure(fig, "bars", spec, profile)
        assert [p.name for p in paths] == ["bars.png", "bars.pdf"]
        assert all(p.stat().st_size > 1000 for p in paths)
        assert sorted(p.name for p in (tmp_path / profile).iterdir()) == ["bars.pdf", "bars.png"]
        # the spec in the files, not drawn on the figure; the smoke profile says what it is
        assert Image.open(paths[0]).text["Description"] == spec
        assert spec.encode() in paths[1].read_bytes() or b"Subject" in paths[1].read_bytes()
        drawn = [t.get_text() for t in fig.texts]
        assert drawn == ([] if profile != "smoke" else
                         ["SMOKE PROFILE (synthetic data, not comparable with the paper)"])


def test_tables_are_saved_as_csv_with_their_provenance_and_linked_from_the_caption(
        tmp_path, monkeypatch):
    monkeypatch.setenv("MIMLIB_EXPORTS", str(tmp_path / "exports"))
    df = pd.DataFrame({"method": ["MSP", "MIM"], "auroc": [0.912345678, 0.96]})
    path = save_table(df, "tbl-x", "profile paper; k=10", "paper")
    assert path == tmp_path / "exports" / "paper" / "tbl-x.csv"
    assert path.read_text().splitlines()[0] == "# profile paper; k=10"
    back = pd.read_csv(path, skiprows=1)
    assert back["auroc"][0] == 0.912345678  # full precision, not the table's four digits
    assert list(back["method"]) == ["MSP", "MIM"]
    monkeypatch.chdir(tmp_path)  # notebooks run in the project root; pages are book/executed
    link = download_link(path, "CSV")
    assert link == "{download}`CSV <../../exports/paper/tbl-x.csv>`"
    table = markdown_table(df, "Scores", "tbl-x", "profile paper", link=link)
    assert table.splitlines()[0] == f"~~~{{table}} Scores *(profile paper)* {link}"


def test_benchmark_table_reads_every_machine_and_says_when_there_is_none(tmp_path):
    assert analysis.benchmark_table(str(tmp_path)).machine.tolist() == ["none yet"]
    assert analysis.benchmark_provenance(str(tmp_path)) == "no benchmark run yet"
    for name, device in (("cpu", "cpu: x86_64"), ("h200", "cuda: NVIDIA H200")):
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "device": device, "threads": 2, "torch": "2.14.1", "git": "fa7801fe250c-dirty",
            "created": "2026-11-28T21:50:12Z", "rows": [
            {"measure": "(b) ratio", "value": 1.01, "unit": "ratio", "target": "<= 1.05",
             "ok": True},
            {"measure": "(d) images/s", "value": 5.0, "unit": "images/s", "target": "",
             "ok": None}]}))
    table = analysis.benchmark_table(str(tmp_path))
    assert table.machine.tolist() == ["cpu: x86_64"] * 2 + ["cuda: NVIDIA H200"] * 2
    assert table.ok.tolist() == ["yes", "", "yes", ""]
    # the caption names the runs, which the book's profile did not make
    assert analysis.benchmark_provenance(str(tmp_path)) == (
        "python -m benchmarks.run on cpu: x86_64 (2 threads, torch 2.14.1, git fa7801fe-dirty, "
        "2026-11-28); cuda: NVIDIA H200 (2 threads, torch 2.14.1, git fa7801fe-dirty, "
        "2026-11-28)")


def test_gpu_summary_tables(tmp_path):
    assert analysis.gpu_summary(str(tmp_path)) is None
    rows = [{"detector": "MSP", "ood": "gaussian", "auroc": 0.8, "aupr_in": 0.7,
             "aupr_out": 0.9, "fpr95": 0.5}]
    summary = {"protocols": {"faithful": {"mean_auroc": {"MSP": 0.8, "MIM": 0.9}, "rows": rows},
                             "corrected": {"mean_auroc": {"MSP": 0.8, "MIM": 0.95},
                                           "rows": rows}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    wide, long = analysis.gpu_tables(analysis.gpu_summary(str(tmp_path)))
    assert wide.set_index("method").loc["MIM", "corrected"] == pytest.approx(0.95)
    assert long.protocol.tolist() == ["faithful", "corrected"]


def test_gpu_provenance_names_device_revision_torch_and_epochs():
    summary = {"arch": "wrn40_2", "epochs": 37, "environment": {
        "device": "cuda: NVIDIA H200", "git": "0123456789abcdef0123456789abcdef01234567",
        "versions": {"torch": "2.11.0"}}}
    assert analysis.gpu_provenance(summary) == (
        "GPU run on cuda: NVIDIA H200, git 01234567, torch 2.11.0, wrn40_2, 37 pretraining epochs")


def test_gpu_warnings_name_unfinished_protocols_and_a_short_pretraining():
    full = {"epochs": 100, "unfinished": [], "protocols": {"corrected": {"base_accuracy": 0.95}}}
    assert analysis.gpu_warnings(full) == []
    short = {**full, "epochs": 40, "unfinished": ["faithful"]}
    first, second = analysis.gpu_warnings(short)
    assert "faithful protocol finished" in first
    assert "40 of the OE recipe's 100 epochs" in second and "95.00%, against 94.84%" in second


def test_collapse_warnings_fire_only_near_chance_accuracy():
    def ev(acc):
        return Evaluation(rows=[], scores={}, accuracy=acc, record={})
    notes = analysis.collapse_warnings({("c10", "faithful"): ev(0.11),
                                        ("c10", "corrected"): ev(0.85)}, {"c10": 10})
    assert len(notes) == 1 and notes[0].startswith("MIM collapsed on c10 under the faithful")
    assert "accuracy 0.110 (chance 0.100)" in notes[0]


def test_runtime_table_counts_a_shared_forward_pass_once(tmp_path):
    from mimlib.companion.results.store import Store

    store = Store(tmp_path)
    model = {"method": "mim", "base": {"arch": "small_cnn"}}
    store.put("finetune", model, {"seconds": 3.0, "log": [{}] * 7})
    for detector in ("MSP", "Energy", "ViM"):
        store.put("scores", {"model": model, "data": {"id": 1}, "detector": detector},
                  {"timings": {"fit": 0.5, "forward (all sets, shared)": 2.0, "score": 0.1}})
    table = analysis.runtime_table(store)
    forward = table[table.what == "forward"]
    assert len(forward) == 1 and forward.seconds.item() == 2.0
    assert forward.detail.item() == "mim small_cnn, all sets, 3 detector(s)"
    assert sorted(table[table.what == "fit"].detail) == ["Energy", "MSP", "ViM"]
    assert table[table.what == "mim"].steps.item() == 7
    assert "| — |" in markdown_table(forward, "c", "n", "p")  # no steps: a dash, not <NA>
    summary = analysis.runtime_summary(table).set_index(["what", "detail"])
    assert summary.loc[("mim", "small_cnn"), "seconds"] == 3.0
    assert summary.loc[("forward", "all sets"), "runs"] == 1
    assert summary.loc[("fit", "MSP"), "seconds per run"] == 0.5
    assert summary["seconds"].is_monotonic_decreasing


def test_the_precision_verdict_names_the_largest_move_and_the_largest_relative_one():
    effect = pd.DataFrame([
        {"arm": "MIM", "measure": "AUROC, mean, noise (OE paper)", "difference": -0.0006,
         "seed sd (fp32)": 0.0042},
        {"arm": "control", "measure": "AUROC, mean, far-OOD", "difference": 0.0004,
         "seed sd (fp32)": 0.0007},
        {"arm": "MIM", "measure": "AUROC, Blobs", "difference": -0.0100, "seed sd (fp32)": 0.001},
        {"arm": "MIM", "measure": "ID accuracy", "difference": -0.0002, "seed sd (fp32)": 0.0002},
        {"arm": "control", "measure": "ID accuracy", "difference": 0.0004,
         "seed sd (fp32)": 0.0004}])
    assert analysis.precision_verdict(effect) == (
        "Training in bf16 instead of fp32 moves a group's mean AUROC by at most 0.0006 (MIM, "
        "noise (OE paper)); relative to the spread over fine-tuning seeds in fp32, the largest "
        "move is 0.57 times it (control, far-OOD). ID accuracy moves by at most 0.0004 (seed "
        "spread 0.0004).")  # a single set's row (Blobs) is no group


def test_from_scratch_scales_training_and_forward_passes_by_the_measured_speed_ups(tmp_path):
    def row(what, numerics, ms):
        return {"measure": f"(g) ResNet-20 {what}, batch 256, {numerics}", "value": ms,
                "unit": "ms", "target": "", "ok": None}

    (tmp_path / "cpu.json").write_text(json.dumps({"device": "cpu: x86_64", "arch": "resnet20",
        "rows": [row("training step", "fp32, contiguous", 700.0),
                 row("forward", "fp32, contiguous", 200.0),
                 row("training step", "bf16, channels_last", 350.0),
                 row("forward", "bf16, channels_last", 80.0),
                 {"measure": "(g) ResNet-20 forward, fp32, contiguous: GFLOP/s (of peak 100)",
                  "value": 50.0, "unit": "GFLOP/s", "target": "", "ok": None}]}))
    (tmp_path / "gpu.json").write_text(json.dumps({"device": "cuda: H200", "arch": "resnet20",
        "rows": [row("training step", "bf16, channels_last", 1.0)]}))  # another machine
    speedups = analysis.numerics_speedups(str(tmp_path), "resnet20")
    assert speedups == {"fp32, contiguous": {"training step": 1.0, "forward": 1.0},
                        "bf16, channels_last": {"training step": 2.0, "forward": 2.5}}
    assert analysis.numerics_speedups(str(tmp_path), "wrn40_2") == {}
    runtime = pd.DataFrame({"what": ["mim", "control (lam=0)", "adapt", "forward", "score"],
                            "seconds": [3600.0, 1800.0, 1800.0, 3600.0, 360.0],
                            "device": ["cpu"] * 5})
    table = analysis.from_scratch(runtime, speedups).set_index("part")
    assert table.loc["training runs"].tolist() == pytest.approx([2.0, 1.0])
    assert table.loc["forward passes"].tolist() == pytest.approx([1.0, 0.4])
    assert table.loc["detectors"].tolist() == pytest.approx([0.1, 0.1])  # not scaled
    assert table.loc["total"].tolist() == pytest.approx([3.1, 1.5])
    # a run made on a GPU is not sped up by what the CPU benchmark measured
    on_gpu = pd.concat([runtime, pd.DataFrame({"what": ["mim"], "seconds": [3600.0],
                                               "device": ["cuda"]})], ignore_index=True)
    assert analysis.from_scratch(on_gpu, speedups).set_index("part").loc[
        "training runs"].tolist() == pytest.approx([3.0, 2.0])
    assert analysis.from_scratch_sentence(table.reset_index()) == (
        "Computed again from scratch on the machine that made them, the stored computations take "
        "3.1 hours in fp32, contiguous (training runs 2.0 h, forward passes 1.0 h, detectors "
        "0.1 h); with training and forward passes in bf16, channels_last, the fastest numerics "
        "measured in section (g), about 1.5 hours: within the 90-minute target.")
    assert analysis.from_scratch_sentence(table.reset_index(), target_hours=0.75).endswith(
        "about 1.5 hours: 2.0 times the 45-minute target.")
    empty = analysis.from_scratch(runtime.iloc[:0], speedups)
    assert empty.part.tolist() == ["total"] and empty.iloc[0, 1:].tolist() == [0.0, 0.0]
    assert analysis.from_scratch_sentence(empty).startswith("The store holds no computation yet")


def test_what_each_chapter_costs_comes_from_the_entries_its_run_used(tmp_path, monkeypatch):
    """01 pretrains and scores MSP; 02 re-uses both and adds Energy (on the same forward pass)
    and a MIM run: 02 alone costs everything, in order only what 01 had not computed."""
    from mimlib.companion.results.store import USAGE_ENV, Store

    store = Store(tmp_path)
    base, mim = {"arch": "small_cnn"}, {"method": "mim", "base": {"arch": "small_cnn"}}
    data = {"id": 1}
    used = tmp_path / "used.jsonl"
    monkeypatch.setenv(USAGE_ENV, str(used))
    store.put("pretrain", base, {"seconds": 100.0})
    store.put("scores", {"model": base, "data": data, "detector": "MSP"},
              {"timings": {"forward (all sets, shared)": 20.0, "fit": 1.0, "score": 2.0}})
    uses = [line for line in used.read_text().splitlines()]
    assert len(uses) == 2 and '"kind": "pretrain"' in uses[0]  # put reads back what it wrote
    monkeypatch.delenv(USAGE_ENV)
    store.record_usage("01_first", ["pretrain/" + store.path("pretrain", base).name,
                                    "scores/" + store.path("scores", {"model": base, "data": data,
                                                                      "detector": "MSP"}).name])
    store.put("scores", {"model": base, "data": data, "detector": "Energy"},
              {"timings": {"forward (all sets, shared)": 20.0, "fit": 0.0, "score": 3.0}})
    store.put("finetune", mim, {"seconds": 900.0})
    store.record_usage("02_second", [f"{e.record['kind']}/{e.record['key']}"
                                     for e in store.entries()])
    assert sorted(store.usage()) == ["01_first", "02_second"]
    costs = analysis.chapter_costs(store).set_index("chapter")
    assert costs.loc["01_first", "hours alone"] * 3600 == pytest.approx(123.0)
    assert costs.loc["02_second", "hours alone"] * 3600 == pytest.approx(1026.0)  # one forward
    assert costs.loc["02_second", "hours in order"] * 3600 == pytest.approx(903.0)
    assert costs["entries"].tolist() == [2, 4]
    assert costs["hours in order"].sum() * 3600 == pytest.approx(
        analysis.runtime_table(store)["seconds"].sum())
    store.record_usage("02_second", ["finetune/" + store.path("finetune", mim).name])
    assert analysis.chapter_costs(store).set_index("chapter").loc[
        "02_second", "hours alone"] * 3600 == pytest.approx(900.0)  # a re-run replaces it


def test_sweeps_keep_whole_number_settings_whole(monkeypatch):
    """The no-fine-tuning row has no k, which made k a float column printed as 5.0000."""
    runs = _recording_runs(monkeypatch)
    df = analysis.sweep(runs, None, {"k": 10}, ({"k": k, "aug_p": p} for k, p in ((1, 0.5),
                                                                               (5, 1.0))))
    assert df["variant"].tolist() == ["no fine-tuning", analysis.CONTROL, "k=1, aug_p=0.5",
                                      "k=5, aug_p=1.0"]
    assert str(df["k"].dtype) == "Int64" and df["k"].tolist()[2:] == [1, 5]
    assert df["k"].isna()[:2].all() and df["aug_p"].dtype == np.float64
    assert "| — | 0.5000 | — |" in markdown_table(df[["k", "mean_auroc", "aug_p"]], "c", "n", "p")


class _RecordingRuns:
    """Stands in for an Experiment: records the MIM settings of every run it is asked for."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def mim_model(self, base, **settings):
        self.asked.append(settings)
        return settings


def _recording_runs(monkeypatch) -> _RecordingRuns:
    """A recorder, with each sweep row reduced to its labels and a fixed AUROC."""
    monkeypatch.setattr(analysis.tables, "summary_row",
                        lambda exp, run, **labels: {**labels, "mean_auroc": 0.5})
    return _RecordingRuns()


def test_a_sweep_runs_every_variant_once_per_seed_and_the_model_before_once(monkeypatch):
    runs = _recording_runs(monkeypatch)
    asked = runs.asked
    df = analysis.sweep(runs, None, {"k": 10, "seed": 7}, [{"k": 1}, {"k": 5}], seeds=[0, 1])
    assert df["variant"].tolist() == ["no fine-tuning", analysis.CONTROL, analysis.CONTROL,
                                      "k=1", "k=1", "k=5", "k=5"]  # grouped by variant
    assert df["seed"].isna().tolist() == [True] + [False] * 6
    assert df["seed"].tolist()[1:] == [0, 1] * 3
    assert sorted((a["k"], a["seed"], a.get("lam")) for a in asked) == [
        (1, 0, None), (1, 1, None), (5, 0, None), (5, 1, None), (10, 0, 0.0), (10, 1, 0.0)]
    with pytest.raises(ConfigError, match="seeds is empty"):
        analysis.sweep(runs, None, {}, [{"k": 1}], seeds=[])


def test_the_spread_of_a_sweep_is_the_mean_and_sample_sd_over_its_seeds():
    df = pd.DataFrame({"variant": ["no fine-tuning", "k=1", "k=1", "k=1", "k=10", "k=10"],
                       "k": pd.array([None, 1, 1, 1, 10, 10], dtype="Int64"),
                       "seed": pd.array([None, 0, 1, 2, 0, 1], dtype="Int64"),
                       "mean_auroc": [0.6, 0.70, 0.72, 0.74, 0.80, 0.81],
                       "accuracy": [0.9, 0.89, 0.88, 0.87, 0.9, 0.9], "auroc[x]": 0.5})
    out = analysis.sweep_spread(df)
    assert out["variant"].tolist() == ["no fine-tuning", "k=1", "k=10"]
    assert out["k"].tolist()[1:] == [1, 10] and out["seeds"].tolist() == [0, 3, 2]
    assert out["mean_auroc"].round(6).tolist() == [0.6, 0.72, 0.805]
    assert out["mean_auroc_sd"].round(6).tolist()[1:] == [0.02, 0.007071]
    assert np.isnan(out["mean_auroc_sd"][0])  # one run: no spread, not a zero one
    assert "auroc[x]" not in out and "seed" not in out


def _seeded_sweep() -> pd.DataFrame:
    rows = [{"variant": "no fine-tuning", "seed": None, "mean_auroc": 0.60, "accuracy": 0.9,
             "auroc[a]": 0.6, "auroc[b]": 0.6}]
    for k, base in ((1, 0.70), (10, 0.80)):
        for seed in (0, 1, 2):
            rows.append({"variant": f"k={k}", "k": k, "seed": seed, "accuracy": 0.88,
                         "mean_auroc": base + 0.01 * seed, "auroc[a]": base + 0.01 * seed,
                         "auroc[b]": base - 0.1})
    return pd.DataFrame(rows).astype({"seed": "Int64", "k": "Int64"})


def test_sweep_bars_draw_the_spread_over_seeds_and_each_seed():
    import matplotlib.collections as mcoll
    import matplotlib.pyplot as plt

    df = _seeded_sweep()
    bars = plots.sweep_bars(df)
    ax = bars.axes[0]
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.60, 0.71, 0.81])
    errors = [c for c in ax.collections if isinstance(c, mcoll.LineCollection)]
    assert len(errors) == 1 and len(errors[0].get_segments()) == 2  # none for one run
    assert sum(len(c.get_offsets()) for c in ax.collections
               if isinstance(c, mcoll.PathCollection)) == 7
    plt.close(bars)


def test_sweep_bars_draw_one_panel_per_ood_group_with_the_groups_own_means():
    import matplotlib.pyplot as plt

    df = _seeded_sweep().assign(mean_auroc_near=lambda d: d.mean_auroc - 0.2,
                                mean_auroc_far=lambda d: d.mean_auroc + 0.1)
    fig = plots.sweep_bars(df)
    assert [ax.get_title() for ax in fig.axes] == ["near-OOD", "far-OOD"]  # no noise column
    near, far = fig.axes
    assert [p.get_width() for p in near.patches] == pytest.approx([0.40, 0.51, 0.61])
    assert [p.get_width() for p in far.patches] == pytest.approx([0.70, 0.81, 0.91])
    assert [t.get_text() for t in near.get_yticklabels()][0] == "no fine-tuning  (acc 0.900)"
    plt.close(fig)


def test_the_per_set_heatmap_shows_each_variants_mean_over_seeds_per_set():
    import matplotlib.pyplot as plt

    fig = plots.per_set_heatmap(_seeded_sweep())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["no fine-tuning", "k=1", "k=10"]
    assert [t.get_text() for t in ax.texts] == ["0.600", "0.600", "0.710", "0.600", "0.810",
                                                "0.700"]
    plt.close(fig)


def test_the_gallery_draws_every_image_large_with_its_msp_and_k():
    """Rows are k, columns the images without and with augmentation; the images fill the
    figure (tight_layout once squeezed them into a fraction of their cells)."""
    import matplotlib.pyplot as plt
    import torch

    ks, n = [1, 2, 3, 5, 10, 20], 8  # the chapter's grid
    batches = {v: {k: torch.zeros(n, 3, 32, 32) for k in ks} for v in ("mixed", "augmented")}
    msp = {v: {k: np.linspace(0.1, 0.8, n) for k in ks} for v in batches}
    fig = plots.mixing_gallery(batches, msp, n)
    fig.canvas.draw()  # images keep their aspect at draw time
    axes = fig.axes
    assert len(axes) == len(ks) * 2 * n
    assert [a.get_title() for a in axes[:3]] == ["0.10", "0.20", "0.30"]
    assert [axes[r * 2 * n].get_ylabel() for r in range(len(ks))] == [f"k = {k}" for k in ks]
    width, height = fig.get_size_inches()
    row, column = axes[: 2 * n], axes[:: 2 * n]
    assert sum(a.get_position().width for a in row) > 0.75  # of the figure's width
    assert sum(a.get_position().height for a in column) > 0.6  # of its height
    plt.close(fig)


def test_msp_distributions_draw_every_set_in_its_own_style():
    """Twelve series once shared the ten default colours (ID and rademacher both blue)."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    groups = ([("ID: a", "ID"), ("ID: b", "ID")] + [(f"mixed k={k}", "mixed") for k in (2, 5, 10)]
              + [(f"ood{i}", "OOD") for i in range(9)])
    frame = pd.concat([pd.DataFrame({"group": g, "kind": kind, "msp": rng.uniform(0.2, 1, 20)})
                       for g, kind in groups], ignore_index=True)
    fig = plots.msp_distributions({"before": frame, "after": frame})
    ecdf = fig.axes[2]
    labels = [line.get_label() for line in ecdf.get_lines()]
    assert labels == ["ID (all classes)", "mixed k=2", "mixed k=5", "mixed k=10"] + [
        f"ood{i}" for i in range(9)]
    styles = {(mcolors.to_hex(line.get_color()), line.get_linestyle())
              for line in ecdf.get_lines()}
    assert len(styles) == len(labels)
    assert all(line.get_linestyle() == "--" for line in ecdf.get_lines()[1:4])
    plt.close(fig)


def test_the_runtime_page_of_an_empty_store_says_so_instead_of_crashing(tmp_path):
    from mimlib.companion.results.store import Store

    table = analysis.runtime_table(Store(tmp_path / "empty"))
    summary = analysis.runtime_summary(table)
    assert table.empty and summary.empty
    fig = plots.runtime_bars(summary)
    assert "no stored computations yet" in fig.axes[0].texts[0].get_text()
    costs = analysis.chapter_costs(Store(tmp_path / "empty"))
    assert costs.empty and list(costs.columns)[:2] == ["chapter", "device"]
    fig = plots.chapter_cost_bars(costs)
    assert "no chapter has recorded" in fig.axes[0].texts[0].get_text()


def test_a_sweep_per_batch_norm_mode_has_a_control_per_mode_and_the_model_before_once(
        monkeypatch):
    runs = _recording_runs(monkeypatch)
    asked = runs.asked
    df = analysis.sweep_bn_modes(runs, None, {"k": 10}, [{"k": 1}], seeds=[0],
                                 bn_modes=["frozen", "mixed-stats"])
    assert df["variant"].tolist() == [
        "no fine-tuning", f"{analysis.CONTROL}, BN frozen", "k=1, BN frozen",
        f"{analysis.CONTROL}, BN mixed-stats", "k=1, BN mixed-stats"]
    assert df["bn_mode"].tolist()[1:] == ["frozen"] * 2 + ["mixed-stats"] * 2
    assert df["bn_mode"].isna()[0]
    assert sorted((a["bn_mode"], a["k"], a.get("lam")) for a in asked) == [
        ("frozen", 1, None), ("frozen", 10, 0.0), ("mixed-stats", 1, None),
        ("mixed-stats", 10, 0.0)]
    one = analysis.sweep_bn_modes(runs, None, {"k": 10}, [{"k": 1}], seeds=[0])
    assert one["variant"].tolist() == ["no fine-tuning", analysis.CONTROL, "k=1"]
    asked.clear()  # without the references: only the variants, once per mode
    bare = analysis.sweep_bn_modes(runs, None, {"steps": 130}, [{"steps": None}], seeds=[0],
                                   include_base=False, bn_modes=["frozen", "id-stats"])
    assert bare["variant"].tolist() == ["steps=one epoch, BN frozen", "steps=one epoch, BN id-stats"]
    assert [(a["bn_mode"], a["steps"]) for a in asked] == [("frozen", None), ("id-stats", None)]
    with pytest.raises(ConfigError, match="bn_modes is empty"):
        analysis.sweep_bn_modes(runs, None, {}, [{"k": 1}], bn_modes=[])


def test_the_batch_norm_effect_is_each_modes_mean_over_seeds_and_its_change_from_its_control(
        monkeypatch):
    near = {("frozen", 1.0, 0): 0.80, ("frozen", 1.0, 1): 0.82, ("frozen", 0.0, 0): 0.78,
            ("frozen", 0.0, 1): 0.78, ("id-stats", 1.0, 0): 0.84, ("id-stats", 1.0, 1): 0.86,
            ("mixed-stats", 1.0, 0): 0.70, ("mixed-stats", 1.0, 1): 0.74,
            ("mixed-stats", 0.0, 0): 0.81, ("mixed-stats", 0.0, 1): 0.83}

    def row(exp, run, **labels):
        if run is None:  # the model before fine-tuning
            return {**labels, "mean_auroc_near": 0.7, "accuracy": 0.9}
        from mimlib.train_config import MIMConfig  # the control's mode as the store keys it
        mode = MIMConfig(**{k: v for k, v in run.items() if k != "steps"}).bn_mode
        return {**labels, "mean_auroc_near": near[(mode, run.get("lam", 1.0), run["seed"])],
                "accuracy": 0.9}

    monkeypatch.setattr(analysis.tables, "summary_row", row)
    table = analysis.bn_mode_effect(_RecordingRuns(), None, {"steps": 130}, [0, 1])
    assert table["bn_mode"].tolist() == ["frozen", "id-stats", "mixed-stats"]
    assert table["seeds"].tolist() == [2, 2, 2]
    assert table["mean_auroc_near"].tolist() == pytest.approx([0.81, 0.85, 0.72])
    # id-stats and mixed-stats share one control: train mode on the ID batch
    assert table["mean_auroc_near_control"].tolist() == pytest.approx([0.78, 0.82, 0.82])
    assert table["mean_auroc_near_vs_control"].tolist() == pytest.approx([0.03, 0.03, -0.10])
    assert table["accuracy_vs_control"].tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_a_control_in_id_stats_is_the_mixed_stats_control():
    from mimlib.train_config import MIMConfig

    assert MIMConfig(bn_mode="id-stats", lam=0.0).bn_mode == "mixed-stats"
    assert MIMConfig(bn_mode="id-stats").bn_mode == "id-stats"
    assert MIMConfig(bn_mode="frozen", lam=0.0).bn_mode == "frozen"


def test_the_runtime_pages_cross_machine_table_reads_the_committed_measurement(tmp_path) -> None:
    """Per machine played and kind of step, the largest differences and the tolerance; one row
    and a sentence saying so where a profile has no measurement."""
    from mimlib.companion.results.rederive import EPOCH, FORWARD, TOLERANCES

    path = Path(__file__).resolve().parents[1] / "results" / "cifar10-cpu" / "cross-machine.json"
    table = analysis.cross_machine(path)
    avx2 = table[table["machine played"] == "AVX2, 2 threads"].set_index("step")
    assert avx2.loc[FORWARD, "largest |Δ| AUROC"] == pytest.approx(1.6345e-05)
    assert avx2.loc[EPOCH, "largest |Δ| ID accuracy"] == pytest.approx(1e-4, rel=1e-3)
    assert avx2.loc[EPOCH, "tolerance"] == TOLERANCES[EPOCH]
    assert set(table["native bf16"]) == {"yes", "no"}
    sentence = analysis.cross_machine_sentence(path)
    assert "forward pass (4 machines): AUROC 1.6e-05, ID accuracy 0" in sentence
    assert "one-epoch fine-tuning (1 machine): AUROC 6.1e-05, ID accuracy 0.0001" in sentence
    absent = tmp_path / "none.json"
    assert analysis.cross_machine(absent)["machine played"].tolist() == [
        "not measured for this profile"]
    assert analysis.cross_machine_sentence(absent).startswith("This profile's numbers have not")
