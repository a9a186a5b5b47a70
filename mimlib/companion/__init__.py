"""The companion's machinery, above the method: the results store and the experiments
that fill it, the analyses and figures of the book, and the orchestration that runs its
notebooks (papermill, executors, the ``mimlib`` command). The method itself (mixing,
augmentation, training, detectors, metrics, data, models) is :mod:`mimlib`.

``pip install mimlib`` installs the method alone; the companion's packages come with the
``book`` extra. Importing the companion without them fails here, at once, naming every missing
package and the command that installs them, rather than deep inside some module with a bare
``No module named 'yaml'``.
"""

from importlib.util import find_spec

#: What the companion needs beyond the method, as (the module it imports, the distribution pip
#: installs it from): the ``book`` extra of pyproject.toml (a test keeps the two in step).
REQUIRED: tuple[tuple[str, str], ...] = (
    ("sklearn", "scikit-learn"),
    ("yaml", "pyyaml"),
    ("filelock", "filelock"),
    ("submitit", "submitit"),
    ("papermill", "papermill"),
    ("ipykernel", "ipykernel"),
    ("jupyter_book", "jupyter-book"),
    ("sphinx-mathjax-offline", "sphinx-mathjax-offline"),
    ("matplotlib", "matplotlib"),
    ("seaborn", "seaborn"),
    ("pandas", "pandas"),
)


def missing_packages() -> list[str]:
    """The distributions of :data:`REQUIRED` whose module cannot be found (none is imported:
    looking one up costs microseconds, importing pandas or matplotlib seconds)."""
    return [distribution for module, distribution in REQUIRED if find_spec(module) is None]


if _missing := missing_packages():
    raise ImportError(
        f"mimlib.companion needs the 'book' extra, and {', '.join(_missing)} "
        f"{'is' if len(_missing) == 1 else 'are'} not installed: pip install \"mimlib[book]\" "
        "(from a clone of the project: pip install -e \".[book]\"). `import mimlib` alone "
        "gives the method without them.", name=__name__)
