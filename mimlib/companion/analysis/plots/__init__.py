"""The book's figures, each built from a tidy table (one source per figure), one module per
topic: the method's chapters (:mod:`.training`), comparisons (:mod:`.comparisons`), forest
plots (:mod:`.forest`) and the page every figure is fitted to (:mod:`.page`). Data sets, models
and protocols appear in titles, legends and ticks by their readers' names
(:func:`mimlib.companion.analysis.labels.readers_label`), whatever names the table carries.

seaborn is imported inside the figures that draw with it: it takes about a second, which a
script plotting one bar chart (or ``import mimlib.companion.analysis.plots`` in a test) need
not pay.
"""

from .comparisons import (chapter_cost_bars, method_bars, paper_scatter, per_set_heatmap,
                          quirk_effects, runtime_bars, seeds_strip, sweep_bars, sweep_groups)
from .forest import FOREST_FONT, READING_COLOURS, VERDICT_COLOURS, detector_forest, forest_plot
from .page import BODY_PX, PAGE_PX, PAGE_WIDTH_IN, fit_to_page, min_font_pt, png_bytes
from .training import (PALETTE, auroc_curves, embedding_scatter, finetune_curves,
                       mixing_gallery, mixing_statistics, msp_distributions, training_curves)

__all__ = ["chapter_cost_bars", "method_bars", "paper_scatter", "per_set_heatmap",
           "quirk_effects", "runtime_bars", "seeds_strip", "sweep_bars", "sweep_groups",
           "FOREST_FONT", "READING_COLOURS", "VERDICT_COLOURS", "detector_forest", "forest_plot",
           "BODY_PX", "PAGE_PX", "PAGE_WIDTH_IN", "fit_to_page", "min_font_pt", "png_bytes",
           "PALETTE", "auroc_curves", "embedding_scatter", "finetune_curves", "mixing_gallery",
           "mixing_statistics", "msp_distributions", "training_curves"]
