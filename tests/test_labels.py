"""Readers' labels and the re-run command under every table and figure (issue 21, items 2, 3).

Figures and tables name data sets, models and protocols by their display names, whatever names
the table they are made from carries; the specs stay in the provenance and in the CSV. Under
each table and figure, the command that re-runs its page with its parameters: parsed here as
``mimlib`` and papermill parse it, it must name the page and give back exactly the parameters
the page ran with.
"""

from __future__ import annotations

import ast
import io
import shlex
from contextlib import redirect_stdout
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text  # noqa: E402

from mimlib import pins  # noqa: E402
from mimlib.companion import analysis
from mimlib.companion.analysis import plots
from mimlib.companion.run import cli  # noqa: E402
from mimlib.companion.results.catalog import CATALOG, spec_display  # noqa: E402
from mimlib.companion.analysis.labels import PROTOCOL_NAMES, readers_label, readers_table  # noqa: E402
from mimlib.models import ARCHITECTURE_NAMES, ARCHITECTURES, PUBLISHED  # noqa: E402
from mimlib.companion.run.orchestrate import notebook_parameters  # noqa: E402
from mimlib.companion.book.profiles import load_profile  # noqa: E402
from mimlib.companion.results.protocol import PROTOCOLS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = load_profile("cifar10-cpu")["common"]["setup"]  # the real profile's pinned specs
JPEG = REAL["id_data"]
SHORT = pins.display(JPEG)  # folder:cifar10-jpeg.tar.xz@c20cedc5, as table1_grid keys cells
MACHINE = ("folder:", "sha256", "tinyimagenet_", "resnet20", "registry:", "@c20cedc5")


def _texts(fig) -> list[str]:
    """Every text a figure draws: titles, axis labels, tick labels, legends."""
    fig.canvas.draw()  # tick labels are made at draw time
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]


def _machine_words(texts: list[str]) -> list[str]:
    return [t for t in texts if any(word in t for word in MACHINE)]


# --------------------------------------------------------------------------- the names

def test_every_registered_data_set_model_and_protocol_has_a_display_name() -> None:
    assert set(ARCHITECTURES) <= set(ARCHITECTURE_NAMES)
    assert all(weights.display for weights in PUBLISHED.values())
    assert set(PROTOCOLS) <= set(PROTOCOL_NAMES)
    assert all(info.display for info in CATALOG.values())


def test_the_real_profiles_specs_read_as_readers_names_and_keep_their_labels() -> None:
    assert spec_display(JPEG) == spec_display(SHORT) == "CIFAR-10 (JPEG copy)"
    assert spec_display("folder:../shared/data/cifar10-jpeg.tar.xz") == "CIFAR-10 (JPEG copy)"
    names = [spec_display(spec) for spec in REAL["ood_sets"]]
    assert names == ["Tiny ImageNet (crop)", "Tiny ImageNet (resize)", "MNIST",
                     "Gaussian noise", "Rademacher noise", "Blobs"]
    assert [spec_display(pins.display(spec)) for spec in REAL["ood_sets"]] == names
    # another copy of the same file (another pin) is not called by the catalog's name
    assert spec_display("folder:x/cifar10-jpeg.tar.xz@0123abcd") == "cifar10-jpeg"
    assert spec_display("folder:/data/my_set") == "my_set"
    for text in ("k=10", "ID: airplane", "average", "mixed k=2", "no fine-tuning"):
        assert readers_label(text) == text
    # a table's label is made from the spec: citations keep working when names change
    assert analysis.slug(SHORT) == analysis.slug(JPEG) == "folder-cifar10-jpeg-tar-xz-c20cedc5"
    # any other text (a claim, a column label: the claims page's glue names) keeps its words
    assert analysis.slug("MIM beats every post-hoc baseline on AUROC") == \
        "m-beats-every-post-hoc-baseline-on-auroc"  # the last 40 characters
    assert analysis.slug("BN mixed-stats") == "bn-mixed-stats"
    assert analysis.slug("k > 5: mixes of more images") == "k-5-mixes-of-more-images"
    assert analysis.data_label(SHORT) == "CIFAR-10 (JPEG copy)"


# --------------------------------------------------------------------------- tables

def _smoke_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: str = "07_ablation_k",
                   overrides: tuple[tuple[str, str], ...] = ()):
    """A session of ``page`` as ``mimlib run page --profile smoke -p ...`` starts it (the
    template's defaults, the profile's values, the overrides), with what it shows recorded."""
    import IPython.display

    from mimlib.companion.book.session import start

    monkeypatch.chdir(ROOT)  # notebooks run in the project's root
    monkeypatch.setenv("MIMLIB_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.delenv("MIMLIB_NOTEBOOK", raising=False)
    shown: list = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    params = _page_parameters(page, "smoke", list(overrides))
    params["store"] = str(tmp_path / "store")  # nothing computed: an empty store
    session = start(**params, page=page)
    shown.clear()  # the profile's note
    return session, params, shown


def _page_parameters(page: str, profile: str, overrides: list[tuple[str, str]]) -> dict:
    """What the page's start() receives under ``mimlib run``: the template's defaults, then
    the profile's values and the overrides."""
    import papermill as pm

    declared = pm.inspect_notebook(str(ROOT / "notebooks" / f"{page}.ipynb"))
    params = {name: ast.literal_eval(info["default"]) for name, info in declared.items()}
    params.update(notebook_parameters(ROOT, page, load_profile(profile), overrides))
    return params


def _table_parts(markdown: str) -> tuple[str, list[str], list[list[str]], list[str]]:
    """caption line, headers, rows of cells, and the lines under the table."""
    lines = markdown.splitlines()
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines
            if line.startswith("|")]
    end = lines.index("~~~", 1)
    return lines[0], rows[0], rows[2:], [line for line in lines[end + 1:] if line]


def test_a_table_with_store_names_shows_readers_names_and_its_csv_the_machines(
        tmp_path, monkeypatch) -> None:
    session, _, shown = _smoke_session(tmp_path, monkeypatch)
    df = pd.DataFrame({"id_data": [SHORT, SHORT], "protocol": ["faithful", "corrected"],
                       "architecture": ["resnet20", "resnet20"],
                       "weights": ["registry:resnet20/cifar10", "pretrain"],
                       "ood": ["tinyimagenet_crop", "average"], "auroc": [0.81234, 0.5],
                       "auroc[tinyimagenet_resize]": [0.7, 0.6], "variant": ["k=10", "k=1"]})
    session.table(df, "A table", "tbl-labels")
    caption, headers, rows, under = _table_parts(shown[-1].data)
    assert headers == ["ID data", "protocol", "architecture", "weights", "OOD set", "auroc",
                       "AUROC: Tiny ImageNet (resize)", "variant"]
    assert rows[0] == ["CIFAR-10 (JPEG copy)", "faithful (authors' code)", "ResNet-20",
                       "ResNet-20, CIFAR-10 (He et al., published)", "Tiny ImageNet (crop)",
                       "0.8123", "0.7000", "k=10"]
    assert rows[1][:5] == ["CIFAR-10 (JPEG copy)", "corrected (quirks fixed)", "ResNet-20",
                           "trained here", "average"]
    assert not _machine_words(headers + [c for row in rows for c in row])
    # the caption says what the table shows in readers' words, profile included; the spec
    # tuple is the CSV's comment line, and no spec, pin or result id is in the caption
    assert f"*({session.provenance})*" in caption and "SMOKE PROFILE" in caption
    assert not _machine_words([caption.split("{download}")[0]]) and "id=" not in caption
    assert under[0].startswith("<small>Cite as: ") and under[1].startswith("<small>Re-run: ")
    # the CSV keeps the machine names that code reads, its comment line the provenance
    csv = tmp_path / "exports" / "smoke" / "tbl-labels.csv"
    assert csv.read_text().splitlines()[0] == f"# {session.provenance.spec}"
    assert "mim=" in session.provenance.spec and ", id=" in session.provenance.spec
    back = pd.read_csv(csv, skiprows=1)
    assert list(back.columns) == list(df.columns)
    assert back["id_data"].tolist() == [SHORT, SHORT]
    assert back["ood"].tolist() == ["tinyimagenet_crop", "average"]


def test_the_provenance_table_keeps_its_specs(tmp_path, monkeypatch) -> None:
    session, _, shown = _smoke_session(tmp_path, monkeypatch)
    session.provenance_table()
    _, headers, rows, _ = _table_parts(shown[-1].data)
    assert headers == ["what", "value"]
    assert ["profile", "smoke"] in rows


# --------------------------------------------------------------------------- figures

def test_figures_made_from_tables_with_store_names_show_readers_names() -> None:
    cells = pd.DataFrame({
        "id_data": SHORT, "protocol": ["faithful"] * 2 + ["corrected"] * 2,
        "method": ["MSP", "MIM"] * 2, "ood": "average", "auroc": [0.8, 0.85, 0.79, 0.83],
        "paper_auroc": [0.9, 0.95, 0.9, 0.95]})
    fig = plots.method_bars(cells)
    assert [ax.get_title() for ax in fig.axes] == ["mean over the paper's sets"] * 2
    assert [ax.get_ylabel() for ax in fig.axes[::1]] == [
        "CIFAR-10 (JPEG copy),\nfaithful (authors' code)",
        "CIFAR-10 (JPEG copy),\ncorrected (quirks fixed)"]
    assert not _machine_words(_texts(fig))
    plt.close(fig)

    pairs = cells.assign(ood="tinyimagenet_crop")
    fig = plots.paper_scatter(pairs)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["faithful (authors' code)", "corrected (quirks fixed)"]
    plt.close(fig)

    sweep = pd.DataFrame({"variant": ["no fine-tuning", "k=10"], "mean_auroc": [0.7, 0.8],
                          "accuracy": [0.9, 0.88], "auroc[tinyimagenet_crop]": [0.7, 0.8],
                          "auroc[mnist]": [0.6, 0.9]})
    fig = plots.per_set_heatmap(sweep)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Tiny ImageNet (crop)", "MNIST"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["no fine-tuning", "k=10"]
    plt.close(fig)

    arches = pd.DataFrame({"variant": ["resnet20 / base", "resnet56 / MIM"],
                           "mean_auroc": [0.8, 0.85], "accuracy": [0.87, 0.86]})
    fig = plots.sweep_bars(arches)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "ResNet-20 / base  (acc 0.870)", "ResNet-56 / MIM  (acc 0.860)"]
    plt.close(fig)

    rng = np.random.default_rng(0)
    frame = pd.concat([pd.DataFrame({"group": g, "kind": kind, "msp": rng.uniform(0.2, 1, 20)})
                       for g, kind in (("ID: cat", "ID"), ("mixed k=2", "mixed"),
                                       ("tinyimagenet_crop", "OOD"), ("gaussian", "OOD"))])
    fig = plots.msp_distributions({"before": frame})
    assert [line.get_label() for line in fig.axes[1].get_lines()] == [
        "ID (all classes)", "mixed k=2", "Tiny ImageNet (crop)", "Gaussian noise"]
    assert not _machine_words(_texts(fig))
    plt.close(fig)

    curves = {"faithful": pd.DataFrame({"step": [0, 30], "mean_auroc": [0.7, 0.8]})}
    fig = plots.auroc_curves(curves)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "faithful (authors' code)"]
    plt.close(fig)

    runtime = pd.DataFrame({"what": ["mim", "adapt"], "detail": ["resnet20", "resnet56"],
                            "seconds": [30.0, 60.0]})
    fig = plots.runtime_bars(runtime)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "mim: ResNet-20", "adapt: ResNet-56"]
    plt.close(fig)


# --------------------------------------------------------------------------- re-run commands

def _commands(line: str) -> tuple[str, str]:
    """The two commands of a re-run line (its two code spans)."""
    spans = line.split("`")[1::2]
    assert len(spans) == 2, line
    return spans[0], spans[1]


def _parsed_run(command: str):
    argv = shlex.split(command)
    assert argv[:2] == ["mimlib", "run"], argv
    return cli._parser().parse_args(argv[1:])


def _as_run(args, page: str) -> dict:
    """What ``mimlib run`` gives the page from these arguments (what start() receives)."""
    assert args.notebook == page
    return _page_parameters(page, args.profile, [tuple(p) for p in args.parameter])


OVERRIDES = (("ks", "[1, 5]"), ("mim.lr", "1e-4"), ("setup.ood_sets", "[gaussian, blobs]"),
             ("seeds", "[3]"), ("ablation", "{steps: 7, lr: 0.001}"))


@pytest.mark.parametrize("overrides", [(), OVERRIDES], ids=["profile", "what-if"])
def test_the_rerun_command_under_a_table_gives_back_the_pages_parameters(
        tmp_path, monkeypatch, overrides) -> None:
    session, params, shown = _smoke_session(tmp_path, monkeypatch, overrides=overrides)
    session.table(pd.DataFrame({"k": [1]}), "A table", "tbl-x")
    under = _table_parts(shown[-1].data)[3]
    run, papermill_form = _commands(under[1])
    args = _parsed_run(run)
    assert args.profile == "smoke" and args.notebook == "07_ablation_k"
    again = _as_run(args, "07_ablation_k")
    assert again == params  # exactly what this page ran with
    names = sorted({name.split(".")[0] for name, _ in args.parameter})
    assert names == sorted({name.split(".")[0] for name, _ in overrides} | {"store"})
    if not overrides:
        assert run == "mimlib run 07_ablation_k --profile smoke -p store " + shlex.quote(
            params["store"])

    # the papermill form: mimlib parameters writes the file that papermill -f reads
    first, _, second = papermill_form.partition(" && ")
    argv = shlex.split(first)
    assert argv[:2] == ["mimlib", "parameters"] and argv[-2] == ">"
    listed = cli._parser().parse_args(argv[1:-2])
    assert (listed.notebook, listed.profile, listed.parameter) == (
        args.notebook, args.profile, args.parameter)
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(argv[1:-2]) == 0
    file_params = yaml.safe_load(out.getvalue())  # the profile's values and the changes
    defaults = _page_parameters("07_ablation_k", "smoke", [])
    defaults.update(file_params)  # the template's defaults fill in the rest, as in papermill
    assert defaults == params
    from papermill.cli import papermill as papermill_cli

    pm_argv = shlex.split(second)
    assert pm_argv[0] == "papermill"
    ctx = papermill_cli.make_context("papermill", pm_argv[1:])
    assert ctx.params["notebook_path"] == "notebooks/07_ablation_k.ipynb"
    assert ctx.params["parameters_file"] == (argv[-1],)
    assert not ctx.params["parameters"] and not ctx.params["parameters_yaml"]


def test_the_rerun_command_under_a_figure_names_the_page_mimlib_run_ran(
        tmp_path, monkeypatch) -> None:
    import myst_nb

    session, params, _ = _smoke_session(tmp_path, monkeypatch, page="04_main_table",
                                        overrides=(("protocols", "[corrected]"),))
    monkeypatch.setenv("MIMLIB_NOTEBOOK", "04_main_table")  # as mimlib run sets it
    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True:
                        glued.__setitem__(name, value))
    fig, _ = plt.subplots()
    session.figure(fig, "bars")
    caption = glued["bars_provenance"].data
    assert "Cite as: mimlib book" in caption
    line = caption[caption.index("Re-run: "):]
    args = _parsed_run(_commands(line)[0])
    assert _as_run(args, "04_main_table")["protocols"] == ["corrected"]
    assert ["protocols", "[corrected]"] in args.parameter


def test_a_run_that_names_no_page_or_profile_says_why_it_has_no_command(
        tmp_path, monkeypatch) -> None:
    from mimlib.companion.book.rerun import rerun_line
    from mimlib.companion.book.session import start

    monkeypatch.delenv("MIMLIB_NOTEBOOK", raising=False)
    assert "page is not known" in rerun_line(None, "smoke", {})
    assert "not one of mimlib's profiles" in rerun_line("07_ablation_k", "mine", {})
    setup = {"id_data": "synthetic", "ood_sets": ["gaussian"], "arch": "small_cnn",
             "base": "pretrain", "protocol": "corrected", "device": "cpu"}
    # a page is what start() is told, never guessed from its parameters' names
    unnamed = start("smoke", setup, {}, str(tmp_path / "store"), ks=[1])
    assert unnamed.page is None and "page is not known" in unnamed.rerun_line()
    named = start("smoke", setup, {}, str(tmp_path / "store"), page="07_ablation_k", ks=[1])
    assert named.page == "07_ablation_k" and "mimlib run 07_ablation_k" in named.rerun_line()
    monkeypatch.setenv("MIMLIB_NOTEBOOK", "01_mixed_samples")  # as mimlib run sets it
    assert start("smoke", setup, {}, str(tmp_path / "store"), ks=[1]).page == \
        "01_mixed_samples"


def test_the_forest_plot_is_legible_at_the_books_width() -> None:
    """Its text at least the body's size where the book shows it about 7.5 inches wide."""
    from mimlib.companion.analysis import plots

    rows = pd.DataFrame({"setting": ["corrected"] * 2, "comparison": ["MIM − control"] * 2,
                         "group": ["near", "noise"], "estimate": [0.03, -0.2],
                         "low": [0.02, -0.3], "high": [0.04, -0.1],
                         "verdict": ["MIM better", "not judged"], "against": ["", ""]})
    fig = plots.forest_plot(rows)
    assert fig.get_size_inches()[0] <= 7.5
    sizes = {t.get_fontsize() for ax in fig.axes
             for t in (*ax.get_yticklabels(), *ax.get_xticklabels(), *ax.texts, ax.title)
             if t.get_text()}
    assert sizes and min(sizes) >= 12


def test_every_figure_is_fitted_to_the_page_and_its_text_to_the_body_size() -> None:
    """A wide figure with small type becomes at most the page's width with every text at
    least the body's size as shown; a narrow one, shown at its own size, needs less."""
    from mimlib.companion.analysis import plots

    fig, axes = plt.subplots(1, 3, figsize=(13, 3))
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a line")
        ax.set_title("a title", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    smallest = plots.fit_to_page(fig)
    assert fig.get_size_inches()[0] == plots.PAGE_WIDTH_IN
    # 7.5 inches shown at 700 CSS px: a point is 700 / 540 px, so 16 px need 12.3 points
    assert smallest == pytest.approx(16 * 72 * 7.5 / 700)
    assert min(t.get_fontsize() for t in _drawn(fig)) >= smallest - 1e-9
    plt.close(fig)
    # 4 inches at 150 dpi is 600 px, shown as it is: 16 px need 7.7 points
    assert plots.min_font_pt(4.0) == pytest.approx(16 * 72 / 150)


def _drawn(fig) -> list:
    fig.canvas.draw()
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
