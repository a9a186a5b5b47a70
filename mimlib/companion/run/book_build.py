"""Building the book with Jupyter Book, from the executed pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ...errors import MimlibError


def build_book(root: Path, *, strict: bool = True) -> Path:
    """``jupyter-book build`` of the project root (warnings are errors when strict)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output",
           str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode:
        output = proc.stdout + proc.stderr
        tail = "\n".join(output.strip().splitlines()[-40:])
        hint = ("\nA table or figure file that a chapter links is missing (book/exports/ deleted "
                "or moved?): re-run the chapters with `mimlib reproduce --force`."
                if "download file not readable" in output else "")
        raise MimlibError(f"the book did not build (jupyter-book exit {proc.returncode}):\n"
                          f"{tail}{hint}")
    return root / "_build" / "html" / "index.html"
