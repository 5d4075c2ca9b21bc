"""Where the code runs: inside a Jupyter kernel or not, and whether a person is watching.

`in_notebook()` is true in any Jupyter kernel (JupyterLab, Colab, papermill). `interactive()` is also
false in a batch run: `r3kit reproduce` sets R3KIT_BATCH for the kernels it starts, because papermill
saves widget outputs without their state, so a widget would show as nothing in the executed copy.
"""

from __future__ import annotations

import os


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
