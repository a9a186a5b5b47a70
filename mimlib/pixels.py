"""Decoded images of any Pillow mode to 8-bit RGB, scaled from the mode's range, or refused.

``Image.convert("RGB")`` clips wide modes instead of scaling them: a mid-grey 16-bit PNG
(32768 of 65535) becomes white. Here 16-bit modes (``I;16`` and its byte orders) and ``I``
(how Pillow reads 16-bit PGM and TIFF files) are scaled from 0..65535, ``F`` from [0, 1];
values outside the range are refused. Alpha is dropped keeping the stored colour (what
torchvision's loader does for every mode), premultiplied modes first divided by their alpha.
Everything else is Pillow's own conversion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import DataError

#: Modes holding numbers wider than 8 bits: the top of the range each is scaled from.
WIDE_RANGES = {"I": 65535.0, "F": 1.0}
#: Modes with premultiplied alpha, and the straight-alpha mode each is divided back into.
PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}


def rgb8(img: Image.Image, name: str) -> Image.Image:
    """``img`` as an 8-bit RGB image; :class:`DataError` naming ``name`` and the mode if the
    pixels lie outside the mode's range or Pillow cannot convert the mode."""
    mode = img.mode
    if mode.startswith("I;16"):
        return _scaled(np.asarray(img), 65535.0)
    if mode in WIDE_RANGES:
        values = np.asarray(img)
        top = WIDE_RANGES[mode]
        if not np.isfinite(values).all():
            raise DataError(f"{name} is a mode {mode} image with values that are not finite; "
                            "save it as an 8- or 16-bit image, or remove it")
        low, high = values.min(), values.max()
        if low < 0 or high > top:
            raise DataError(f"{name} is a mode {mode} image with values from {low} to {high}, "
                            f"outside the 0..{top:g} it is read from; save it as an 8- or "
                            "16-bit image, or remove it")
        return _scaled(values, top)
    try:
        straight = img.convert(PREMULTIPLIED[mode]) if mode in PREMULTIPLIED else img
        return straight.convert("RGB")
    except (ValueError, OSError) as err:
        raise DataError(f"{name} is a mode {mode} image, which Pillow cannot convert to RGB "
                        f"({err}); save it as an 8-bit RGB image, or remove it") from err


def _scaled(values: np.ndarray, top: float) -> Image.Image:
    """Grey values in [0, top] as an 8-bit RGB image (rounded to the nearest level)."""
    levels = np.rint(values.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    return Image.fromarray(levels).convert("RGB")
