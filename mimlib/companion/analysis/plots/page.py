"""The book's page: how wide a figure may be and how large its text must be to read as the body
text, and a figure as the PNG the exports draw."""

from __future__ import annotations

import warnings

from matplotlib.figure import Figure

from ..report import EXPORT_DPI


#: The book's figures as the page shows them: at most this wide (inches), saved at
#: EXPORT_DPI, shown at their own size or shrunk to PAGE_PX (CSS pixels, the text column of the
#: book's theme in a wide window), and their text at least BODY_PX there (the body font).
PAGE_WIDTH_IN, PAGE_PX, BODY_PX = 7.5, 700, 16


def min_font_pt(width_in: float) -> float:
    """The smallest text (points) that a figure this wide (inches) may carry so that it is as
    large as the body text where the page shows it: an image of ``width_in * EXPORT_DPI``
    pixels shown at ``min(that, PAGE_PX)`` CSS pixels draws a point as ``shown / (72 *
    width_in)`` CSS pixels."""
    shown = min(width_in * EXPORT_DPI, PAGE_PX)
    return BODY_PX * 72 * width_in / shown


def fit_to_page(fig: Figure) -> float:
    """Make a figure legible at the book's width: narrowed to PAGE_WIDTH_IN where it is wider
    (its height kept), every text (titles, labels, ticks, legends, annotations) raised to
    :func:`min_font_pt` of the width it is saved at (its tight box, legends outside the axes
    included), the layout made again; returns that size."""
    import matplotlib.text

    width, height = fig.get_size_inches()
    if width > PAGE_WIDTH_IN:
        fig.set_size_inches(PAGE_WIDTH_IN, height)
    saved = fig.get_size_inches()[0]
    for _ in range(4):  # the saved image is the tight box: long labels or a legend outside
        # the axes widen it, and larger text widens it again; a few passes settle it
        smallest = min_font_pt(saved)
        for ax in fig.axes:
            for axis in ("x", "y"):
                labels = getattr(ax, f"get_{axis}ticklabels")()
                if labels and labels[0].get_fontsize() < smallest:
                    ax.tick_params(axis=axis, labelsize=smallest)
        for text in fig.findobj(matplotlib.text.Text):
            if text.get_fontsize() < smallest:
                text.set_fontsize(smallest)
        if fig.get_layout_engine() is None or type(fig.get_layout_engine()).__name__ == \
                "TightLayoutEngine":
            with warnings.catch_warnings():  # a grid of images (a gallery) has no room to
                warnings.filterwarnings("ignore", "Tight layout not applied")  # give: as drawn
                fig.tight_layout()
        renderer = fig.canvas.get_renderer()
        saved = max(saved, fig.get_tightbbox(renderer).width)
    return smallest


def png_bytes(fig: Figure, dpi: int = EXPORT_DPI) -> bytes:
    """The figure as PNG, as the book's exports draw it (for a page that embeds it: the
    landing page's forest plot)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
