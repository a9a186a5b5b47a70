"""SIGTERM handled as Ctrl-C is: a run stopped by a Slurm time-out or ``timeout`` runs its
clean-ups (the ``finally`` blocks that remove its running page, staging folder and usage file,
and release its store locks), which Python's default action for SIGTERM, an immediate exit,
skips."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see the module)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`. Only in the main thread (where
    Python runs signal handlers) and only where SIGTERM has its default action: a handler
    that another library set (submitit's, in its jobs) is left in charge."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum} (SIGTERM)")

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
