"""What a notebook needs at its top: validated parameters, an experiment, labelled output.

A notebook's parameter cell holds plain data (``profile``, ``setup``, ``mim`` and its own
extras); :func:`start` checks all of it before any work starts and returns a :class:`Session`
whose ``table`` and ``figure`` methods show results with their provenance and glue them for the
book.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ... import pins
from ..analysis.runtime import short_git
from ...errors import ConfigError
from ..results.experiment import Experiment
from ..results.setup import Setup
from ..analysis.labels import readers_label, readers_table
from .pages import EXECUTED
from .profiles import load_profile, profile_names
from ..analysis.report import (cite_line, label, markdown_table, result_id, save_figure, save_table,
                     written_path)
from .rerun import rerun_line
from ..results.provenance import environment, git_revision
from ..results.store import Store, canonical_json
from .parameters import CHECKS, check_parameters
from .style import plot_style


class Provenance(str):
    """What produced a result: in readers' words (the text itself, which captions show) and
    as the spec tuple (``spec``: profile, data specs with their pins, model, protocol,
    parameters, result id), which the CSV's first line and the files' metadata keep."""

    spec: str

    def __new__(cls, words: str, spec: str) -> "Provenance":
        made = super().__new__(cls, words)
        made.spec = spec
        return made


def spec_of(provenance: str) -> str:
    """The spec tuple of a provenance (a plain string, such as a GPU run's, is its own)."""
    return getattr(provenance, "spec", provenance)


def profile_tag(profile: str) -> str:
    """How a caption names the profile (the smoke profile with its warning)."""
    return ("SMOKE PROFILE (synthetic data, not comparable with the paper)" if profile == "smoke"
            else f"profile {profile}")


@dataclass
class Session:
    """One notebook run: its profile, experiment, MIM parameters and provenance line."""

    profile: str
    exp: Experiment
    mim: dict[str, Any]
    params: dict[str, Any]
    #: The page this session runs: what start() was told, else the one ``mimlib run`` names
    #: (``$MIMLIB_NOTEBOOK``); None for a session opened outside both.
    page: str | None = None

    @property
    def provenance(self) -> "Provenance":
        """The label of results made by this page's own setup."""
        return self.provenance_of(self.exp.setup)

    def provenance_of(self, *setups: Setup) -> "Provenance":
        """The label of results made by these setups (a table over two ID sets names both, a
        CIFAR-100 table its own data and protocol, a cross-architecture table each base): in
        readers' words for the caption (data, model, protocol, the ablation's overrides, the
        profile), with the spec tuple (``spec``: data specs, base, parameters, result id) for
        the CSV's first line and the files' metadata."""
        def values(field: Callable[[Setup], Any]) -> Any:
            distinct = list(dict.fromkeys(field(s) for s in setups))
            return distinct[0] if len(distinct) == 1 else distinct

        def words(field: Callable[[Setup], Any]) -> str:
            return " / ".join(dict.fromkeys(str(field(s)) for s in setups))

        ablation = self.params.get("ablation")  # MIM parameters that this page's runs override
        spec = label(self.profile, data=values(lambda s: pins.display(s.id_data)),
                     arch=values(lambda s: s.arch), base=values(lambda s: s.base),
                     protocol=values(lambda s: s.protocol), mim=self.mim,
                     **({"ablation": ablation} if ablation else {}), id=result_id(self.params))
        parts = [words(lambda s: readers_label(s.id_data)), words(lambda s: readers_label(s.arch)),
                 words(lambda s: f"{s.protocol} protocol")]
        if ablation:
            parts.append("ablation runs with " + ", ".join(f"{k} = {v}"
                                                           for k, v in ablation.items()))
        return Provenance(f"{', '.join(parts)}; {profile_tag(self.profile)}", spec)

    @property
    def described(self) -> str:
        """What this page's results are, in readers' words (a caption's part)."""
        return str(self.provenance)

    def described_of(self, *setups: Setup, protocol: bool = True) -> str:
        """Data and model of these setups in readers' words, and the protocol (``protocol``)
        and the profile: the landing page's caption, which covers every protocol."""
        if protocol:
            return str(self.provenance_of(*setups))
        parts = [" / ".join(dict.fromkeys(str(readers_label(getattr(s, field)))
                                          for s in setups)) for field in ("id_data", "arch")]
        return f"{', '.join(parts)}; {profile_tag(self.profile)}"

    def experiment(self, **changes: Any) -> Experiment:
        """The session's experiment with some setup fields changed (same store)."""
        return self.exp.derive(dataclasses.replace(self.exp.setup, **changes))

    def table(self, df: pd.DataFrame, caption: str, name: str, floatfmt: str = ".4f",
              provenance: str | None = None, readers: bool = True,
              shown: list[str] | None = None, folded: str | None = None) -> None:
        """Show df as a numbered table whose caption names the profile and parameters (or
        the given provenance, for results that another run produced), and links its CSV;
        its headers and label cells in readers' words (``readers``; see mimlib.companion.analysis.labels), the
        CSV with the machine names, and under it the cite line and the re-run command.
        ``shown``: the columns the page shows (the CSV keeps all); ``folded``: the title of
        a folded block that holds the table (details a reader opens)."""
        from IPython.display import Markdown, display

        provenance = provenance or self.provenance
        csv = save_table(df, name, spec_of(provenance), self.profile)
        page = df[shown] if shown else df
        markup = markdown_table(readers_table(page) if readers else page, caption, name,
                                provenance, floatfmt, link=download_link(csv, "CSV"),
                                cite=self.cite_as(name), rerun=self.rerun_line())
        if folded:
            markup = f"::::{{admonition}} {folded}\n:class: dropdown\n\n{markup}\n::::"
        display(Markdown(markup))

    def rerun_line(self) -> str:
        """The commands that re-run this page with its parameters (see mimlib.companion.book.rerun)."""
        return rerun_line(self.page, self.profile, self.params)

    def cite_as(self, label: str) -> str:
        """The "cite as" line of a figure or table of this page (see report.cite_line)."""
        return cite_line(label, self.page or "(run outside mimlib reproduce)", self.profile,
                         short_git(git_revision()))

    def note(self, text: str, kind: str = "note") -> None:
        """Show text in a MyST admonition (``note``, ``warning``...): what a reader must not
        miss, such as a collapsed model or a chapter that awaits its run."""
        from IPython.display import Markdown, display

        display(Markdown(f":::{{{kind}}}\n{text}\n:::"))

    def figure(self, fig: Any, name: str, provenance: str | None = None) -> None:
        """Fit fig to the book's width (:func:`~mimlib.companion.analysis.plots.fit_to_page`), save
        it (PNG + PDF, the provenance in their metadata) and glue it and its caption's
        provenance (this page's, or the given one for results that another run produced)."""
        import matplotlib.pyplot as plt
        from IPython.display import Image, Markdown
        from myst_nb import glue

        provenance = provenance or self.provenance
        from ..analysis.plots import fit_to_page

        smallest = fit_to_page(fig)  # legible at the book's width
        png, pdf = save_figure(fig, name, spec_of(provenance), self.profile, smallest)
        # the page shows the exported PNG itself (its resolution and metadata, not a render
        # of its own)
        glue(name, Image(data=written_path(png).read_bytes(), format="png"), display=False)
        label = "fig-" + name.replace("_", "-")  # the :name: of the page's {glue:figure}
        glue(f"{name}_provenance", Markdown(f"*({provenance})* {download_link(pdf, 'PDF')}. "
                                            f"{self.cite_as(label)}. {self.rerun_line()}"),
             display=False)
        plt.close(fig)

    def provenance_table(self) -> None:
        """A closing table: profile, parameters, data checksums, library versions, git revision."""
        env = environment()
        rows = [("profile", self.profile), ("result id", result_id(self.params)),
                ("parameters", canonical_json(self.params)),
                ("git revision", env["git"] or "not a git checkout"),
                ("python / platform", f"{env['python']} / {env['platform']}"),
                ("device", env["device"])]
        rows += [(f"version: {k}", v) for k, v in env["versions"].items()]
        if self.exp.setup.results_only:  # the data are absent: name them by their pins
            specs = (self.exp.setup.id_data, *self.exp.setup.ood_sets)
            rows += [(f"data: {pins.display(spec)}", pins.identity(spec)) for spec in specs]
        else:
            rows += [(f"sha256 of the pixels: {k}", v)
                     for k, v in self.exp.data_checksums().items()]
        page = self.page
        name = "tbl-provenance" + (f"-{re.sub(r'[^a-z0-9]+', '-', page.lower())}" if page else "")
        self.table(pd.DataFrame(rows, columns=["what", "value"]), "Provenance of this page",
                   name, provenance=Provenance(profile_tag(self.profile), self.provenance.spec),
                   readers=False)  # the specs and pins themselves: what this table is for

    def html(self, name: str, markup: str) -> None:
        """Glue an HTML block that another page pastes (``{glue}`` with ``:doc:``): the
        landing page's headline, made here from this page's results."""
        from IPython.display import HTML
        from myst_nb import glue

        glue(name, HTML(markup), display=False)

    def text(self, name: str, value: Any) -> None:
        """Glue a number or string that the book's prose cites."""
        from myst_nb import glue

        glue(name, value, display=False)


def download_link(path: Path, text: str) -> str:
    """A MyST download link from a book page to an exported file (the book reads its pages
    from the executed notebooks, and notebooks run in the project root)."""
    target = os.path.relpath(path.resolve(), EXECUTED.resolve())
    return f"{{download}}`{text} <{target}>`"


def start(profile: str, setup: dict[str, Any], mim: dict[str, Any] | None = None,
          store: str | None = None, *, page: str | None = None, **extras: Any) -> Session:
    """Validate a notebook's parameters, check that its data and base model are in place,
    and open its experiment (nothing is computed yet). ``page`` is the notebook's own name
    (every template of ``notebooks/`` passes it: its re-run line and cite line name it);
    ``extras`` are its other parameters."""
    params = {"profile": profile, "setup": setup, "mim": dict(mim or {}), "store": store,
              **extras}
    given = papermill_given()
    if given is not None:  # in a kernel: what papermill was given must be this page's
        _check_given(params, given)
    check_parameters(None, params)
    if given is not None and not os.environ.get("MIMLIB_EXPORTS_STAGING") \
            and not os.environ.get("MIMLIB_EXPORTS"):
        # not run by mimlib: the book's exports stay those of its pages
        os.environ["MIMLIB_EXPORTS"] = str(RERUN_EXPORTS)
    plot_style()
    exp_setup = Setup(**setup)
    exp_setup.preflight()
    session = Session(profile, Experiment(exp_setup, Store(store) if store else None,
                                          profile=profile), dict(mim or {}), params,
                      page or os.environ.get("MIMLIB_NOTEBOOK") or None)
    about = _profile_about(profile)
    if about:  # what this page's numbers are, before any of them
        session.note(about, "important")
    return session


#: Where a page run outside ``mimlib run`` (papermill, Jupyter) exports its tables and figures
#: when ``$MIMLIB_EXPORTS`` names no folder: ``book/exports/<profile>/`` holds the files the
#: book's own pages link, which only ``mimlib run`` and ``mimlib reproduce`` replace.
RERUN_EXPORTS = Path("book") / "exports" / "rerun"

#: The first line of the cell papermill injects (papermill.translators, comment "Parameters").
PAPERMILL_HEADER = "# Parameters"


def papermill_given() -> set[str] | None:
    """The names papermill assigned in this kernel (its injected cell), empty when it was
    given none; None outside an IPython kernel (a script, a test)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None) \
        or shell.user_ns.get("In", [])
    for source in reversed(history):
        if source.splitlines()[:1] == [PAPERMILL_HEADER]:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return set()
            return {node.id for statement in tree.body if isinstance(statement, ast.Assign)
                    for target in statement.targets for node in ast.walk(target)
                    if isinstance(node, ast.Name)}
    return set()


def _check_given(params: dict[str, Any], given: set[str]) -> None:
    """What papermill was given (``-p``, ``-y``, ``-f``) must name this page's parameters, and
    ``profile`` comes with the data it labels: a page keeps one meaning per name whether
    ``mimlib run`` or papermill alone runs it."""
    unknown = sorted(n for n in given if n not in params and not n.startswith("PAPERMILL_"))
    if unknown:
        raise ConfigError(f"this page has no parameter(s) {unknown}; its parameters are "
                          f"{sorted(params)}")
    if "profile" in given and "setup" not in given:
        raise ConfigError(
            "profile is the label of this page's results (the profile that made them), not a "
            "switch: given alone it would label another profile's data, model and store with "
            "its name. An executed page (book/executed/) keeps its profile; to run a template "
            "of notebooks/ with a profile, give papermill all of that profile's parameters: "
            "`mimlib parameters NN --profile NAME > params.yml`, then `papermill "
            "notebooks/NN_name.ipynb out.ipynb -f params.yml`")
    for name in sorted(given):
        value = params.get(name)
        if isinstance(value, str) and name in CHECKS:
            try:
                CHECKS[name](value)
            except ConfigError as err:
                raise ConfigError(f"parameter {name!r}: {err}; papermill's -p passes text "
                                  f"and numbers only: give lists and mappings as YAML with -y "
                                  f"(-y \"{name}: [...]\" or -y \"{name}: {{...}}\")") from None


def _profile_about(profile: str) -> str:
    """The ``about`` text of a shipped profile (what its numbers are), or ''."""
    return str(load_profile(profile).get("about", "")) if profile in profile_names() else ""


