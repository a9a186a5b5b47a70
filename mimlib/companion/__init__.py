"""The companion's machinery, above the method: the results store and the experiments
that fill it, the analyses and figures of the book, and the orchestration that runs its
notebooks (papermill, executors, the ``mimlib`` command). The method itself (mixing,
augmentation, training, detectors, metrics, data, models) is :mod:`mimlib`."""
