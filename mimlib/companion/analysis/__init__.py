"""Computations behind the notebooks, one module per topic; each takes an
:class:`~mimlib.companion.results.experiment.Experiment` (so heavy steps go through the results store) and returns
tidy :class:`pandas.DataFrame` objects for a notebook to show.

- :mod:`.tables`: Table 1 with its control, summaries, sweeps, setups, the paper beside ours;
- :mod:`.mixed_images`: mixed-image galleries and statistics;
- :mod:`.manifold`: penultimate features and 2-D embeddings;
- :mod:`.quirks`: the authors' quirks and their measured effects;
- :mod:`.claims`, :mod:`.claims_summary`: the paper's claims, each with evidence and a verdict,
  and the verdict at a glance (the forest plots' rows, the landing page's headline);
- :mod:`.other_detectors`: MIM under every detector (a question beyond the paper);
- :mod:`.runtime`: wall times and the benchmark;
- :mod:`.gpu`: the prepared GPU run's summary.
"""

from ...augment import PostMixAugment
from ...detectors import extract
from ..results.setups import architecture_setups
from .claims import claims_table, columns_from
from .claims_summary import forest_frame, landing_headline
from .gpu import gpu_overview, gpu_plan, gpu_provenance, gpu_summary, gpu_tables, gpu_warnings
from .manifold import embed_2d, penultimate_features, stored_embedding, umap_available
from .mixed_images import gallery, mixed_batches, mixing_statistics, msp_of
from .other_detectors import (beside_leaderboard, compare_detectors, difference_table, forest_rows, verdict_html,
                              verdict_sentence)
from .numerics import (cross_machine, cross_machine_provenance, cross_machine_sentence,
                       precision_effect, precision_unmeasurable, precision_verdict)
from .quirks import QUIRK_DETECTORS, bn_mode_effect, design_choices, quirk_effects, quirk_list
from .runtime import (benchmark_provenance, benchmark_table, chapter_costs, from_scratch,
                      from_scratch_sentence, numerics_speedups, runtime_summary, runtime_table,
                      short_git)
from .tables import (CONTROL, NOT_ADAPTED, NOT_IN_PAPER, Table1Grid, across_setups, agreement,
                     collapse_warnings, data_label, evaluation_frame,
                     headline, id_tag, mean_and_std, num_classes, oe_comparison, paper_id,
                     per_class_accuracy, published_not_run, replace_setup,
                     slug, starting_points, summary_row, test_set_selection, sweep, sweep_bn_modes, sweep_spread, table1,
                     table1_grid, wide_table)

__all__ = ["PostMixAugment", "extract", "claims_table", "columns_from", "forest_frame",
           "landing_headline", "gpu_overview",
           "gpu_plan", "gpu_provenance", "gpu_summary", "gpu_tables", "gpu_warnings", "embed_2d",
           "penultimate_features", "stored_embedding", "umap_available", "gallery",
           "mixed_batches", "mixing_statistics", "msp_of", "cross_machine",
           "cross_machine_provenance", "cross_machine_sentence", "precision_effect",
           "precision_unmeasurable", "precision_verdict", "difference_table", "forest_rows",
           "beside_leaderboard", "compare_detectors", "verdict_html", "verdict_sentence", "QUIRK_DETECTORS", "bn_mode_effect",
           "design_choices", "quirk_effects", "quirk_list",
           "benchmark_provenance", "benchmark_table", "chapter_costs", "from_scratch", "from_scratch_sentence",
           "numerics_speedups", "runtime_summary",
           "runtime_table", "short_git", "sweep_bn_modes", "CONTROL", "NOT_ADAPTED", "NOT_IN_PAPER", "Table1Grid", "across_setups",
           "agreement",
           "architecture_setups", "collapse_warnings", "data_label", "evaluation_frame",
           "headline", "id_tag", "mean_and_std", "oe_comparison", "num_classes", "paper_id",
           "per_class_accuracy", "published_not_run", "replace_setup",
           "slug", "starting_points", "summary_row", "test_set_selection", "sweep", "sweep_spread", "table1",
           "table1_grid", "wide_table"]
