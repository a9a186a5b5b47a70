"""Progress of long steps: a terminal bar, or events for the orchestrator when under papermill.

``mimlib reproduce`` runs each notebook in a kernel whose output lands in the executed notebook;
progress bars there would flood it. So when ``MIMLIB_PROGRESS_FILE`` is set (the orchestrator
sets it, :func:`progress_channel`), long steps append throttled JSON lines to that file instead,
and a thread of the orchestrator draws them on the terminal. ``MIMLIB_PROGRESS=0`` silences
progress altogether.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

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


@contextlib.contextmanager
def progress_channel(progress: bool) -> Iterator[dict[str, str]]:
    """A file the kernel writes step progress to, drawn as a terminal bar by a thread."""
    if not progress:
        yield {"MIMLIB_PROGRESS": "0"}
        return
    fd, path = tempfile.mkstemp(prefix="mimlib-progress-", suffix=".jsonl")
    os.close(fd)
    stop = threading.Event()
    thread = threading.Thread(target=_follow, args=(path, stop), daemon=True)
    thread.start()
    try:
        yield {"MIMLIB_PROGRESS": "1", "MIMLIB_PROGRESS_FILE": path}
    finally:
        stop.set()
        thread.join(timeout=2)
        Path(path).unlink(missing_ok=True)


def _follow(path: str, stop: threading.Event) -> None:
    bars: dict[str, Any] = {}
    with open(path) as fh:
        while not stop.is_set():
            line = fh.readline()
            if not line:
                time.sleep(0.2)
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            bar = bars.get(event["desc"])
            if bar is None or event["n"] < bar.n:
                if bar is not None:
                    bar.close()
                bar = bars[event["desc"]] = terminal_bar(event["total"], f"  {event['desc']}",
                                                         True, position=1)
            bar.update(event["n"] - bar.n)
    for bar in bars.values():
        bar.close()


def terminal_bar(total: int, desc: str, enabled: bool, position: int = 0) -> Any:
    """A tqdm bar on stderr (None when not ``enabled``); position 1 sits under the run's bar."""
    if not enabled:
        return None
    from tqdm import tqdm  # imported when a bar is drawn: a run without bars skips it

    return tqdm(total=total, desc=desc, position=position, leave=position == 0,
                file=sys.stderr, dynamic_ncols=True)
