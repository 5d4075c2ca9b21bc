"""Live training curves in a notebook: a figure that redraws in place while GRPO trains.

A transformers TrainerCallback. Every `every` logged steps (and when training ends) it reads the run's
log.csv, which the kit's CSV callback has just appended to (so a resumed run shows its earlier steps too),
draws the same four panels as the final figure (plots.curves_figure: reward, groups with no signal,
reflection length, KL or entropy) and replaces the cell's previous image through an IPython display
handle. Under papermill the executed notebook keeps the last image. Outside a kernel (scripts, tests,
`python -m`) it is not attached; trackers (train.report_to) cover those.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from transformers import TrainerCallback

from r3kit.infra import notebook
from r3kit.infra.distributed import is_main
from r3kit.report.palette import arm


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


class LiveCurves(TrainerCallback):
    """`display(obj, display_id=True)` and `handle.update(obj)` are IPython's; tests pass their own `display`.
    A failure to draw is a warning, never the end of a training run."""

    def __init__(self, reward_target: str, every: int, log_csv: str | Path, display=None):
        if every < 1:
            raise ValueError(f"LiveCurves redraws every `every` >= 1 steps, got {every}")
        self.reward_target, self.every, self.log_csv = reward_target, every, Path(log_csv)
        self._display, self._handle, self.drawn = display, None, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._handle, self.drawn = None, 0  # a new run draws in the cell that runs it

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs and (state.global_step % self.every == 0 or state.global_step >= state.max_steps):
            self.draw(state.global_step, state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        if self.drawn != state.global_step:
            self.draw(state.global_step, state.max_steps)

    def draw(self, step: int, max_steps: int) -> None:
        try:
            self._draw(step, max_steps)
        except Exception as error:  # noqa: BLE001 (a plot must not stop training)
            warnings.warn(f"live training curves could not be drawn at step {step}: {error!r}", stacklevel=2)

    def _draw(self, step: int, max_steps: int) -> None:
        from IPython.display import Image

        from r3kit.report import figures  # matplotlib and pandas: only where a notebook draws the curves

        if not self.log_csv.exists():
            return
        rows = figures._log(self.log_csv)
        fig = figures.curves_figure({arm(self.reward_target): rows},
                                    title=f"{self.log_csv.parent.name}: step {step} of {max_steps} (thin: per step; thick: 10-step mean)")
        image = Image(data=png(fig), format="png")
        if self._display is None:
            from IPython.display import display

            self._display = display
        if self._handle is None:
            self._handle = self._display(image, display_id=True)
        else:
            self._handle.update(image)
        self.drawn = step


def live_curves(cfg, out_dir: str | Path) -> list:
    """The trainer's extra callbacks: live curves of `cfg`'s arm in a notebook kernel (main process only) when
    cfg.live_every > 0, else none."""
    if cfg.live_every and notebook.in_notebook() and is_main():
        return [LiveCurves(cfg.reward_target, cfg.live_every, Path(out_dir) / "log.csv")]
    return []
