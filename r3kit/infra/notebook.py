"""Where the code runs: inside a Jupyter kernel or not, and whether a person is watching.

`in_notebook()` is true in any Jupyter kernel (JupyterLab, Colab, papermill). `interactive()` is also
false in a batch run: `r3kit reproduce` sets R3KIT_BATCH for the kernels it starts, because papermill
saves widget outputs without their state, so a widget would show as nothing in the executed copy.
In a batch run the kernel's stderr (library warnings, banners, progress bars, and C extensions writing to file
descriptor 2 where ipykernel forwards it) goes to the log file named by R3KIT_STDERR_LOG (`r3kit reproduce` names one per notebook in the
run folder's logs/), so the executed copy holds the kit's own output and one line naming that log. The kernel's
stderr stream object is redirected, not replaced, so a logging handler made before still writes to the log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def interactive() -> bool:
    """A live kernel a person is looking at, with ipywidgets installed."""
    if not in_notebook() or batch():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def batch() -> bool:
    return os.environ.get("R3KIT_BATCH", "").strip().lower() in ("1", "true", "yes")


def progress(*args, **kwargs):
    """tqdm.auto's bar (a widget in JupyterLab, text in a terminal), switched off in a batch run: the executed
    copy is a record, and papermill would keep a widget's first frame ("0%") or every frame of a text bar."""
    from tqdm.auto import tqdm

    return tqdm(*args, **{**kwargs, "disable": True} if batch() else kwargs)


def stderr_to_log() -> Path | None:
    """In a kernel given R3KIT_STDERR_LOG, send everything written to stderr to that file (module docstring);
    returns its path, or None where nothing was changed (an interactive session keeps its messages)."""
    path = os.environ.get("R3KIT_STDERR_LOG")
    stream = sys.stderr
    if not path or not in_notebook() or getattr(stream, "r3kit_log", None):  # IPython is imported only past here
        return getattr(stream, "r3kit_log", None)
    from IPython import get_ipython

    log = Path(path)
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "a", buffering=1, encoding="utf-8", errors="replace")
    stream.flush()

    def redirect(*_):
        # IPython sets the stream's `write` for the length of each cell and puts the previous one back after
        # it, so the redirect is made again as every cell starts
        stream.write = handle.write

    redirect()
    get_ipython().events.register("pre_run_cell", redirect)
    stream.r3kit_log = log
    print(f"(library messages on stderr go to {log.name} in the run folder's logs/)")
    return log
