"""Progress of long steps: a terminal bar, or events for the orchestrator when under papermill.

``mimlib reproduce`` runs each notebook in a kernel whose output lands in the executed notebook;
progress bars there would flood it. So when ``MIMLIB_PROGRESS_FILE`` is set (the orchestrator
sets it), long steps append throttled JSON lines to that file instead, and the orchestrator draws
them on the terminal. ``MIMLIB_PROGRESS=0`` silences progress altogether.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_MIN_INTERVAL = 0.5


def track(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """Yield from ``items`` while reporting progress of a step named ``desc``."""
    target = os.environ.get("MIMLIB_PROGRESS_FILE")
    if os.environ.get("MIMLIB_PROGRESS", "1") == "0":
        yield from items
    elif target:
        yield from _to_file(items, total, desc, target)
    else:
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=desc, leave=False,
                        disable=not sys.stderr.isatty())


def _to_file(items: Iterable[T], total: int, desc: str, target: str) -> Iterator[T]:
    last = 0.0
    done = 0
    with open(target, "a", buffering=1) as fh:
        for item in items:
            yield item
            done += 1
            now = time.monotonic()
            if now - last >= _MIN_INTERVAL or done == total:
                fh.write(json.dumps({"desc": desc, "n": done, "total": total}) + "\n")
                last = now
