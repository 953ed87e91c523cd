"""A one-line progress bar on stderr for an interactive single run."""

from __future__ import annotations

import sys

import bpcore


class ProgressBar(bpcore.Callback):
    """Redraws ``name [#####-----] epoch 5/10  train loss 0.41  val loss 0.45`` each epoch; the
    line ends with the last epoch, or at ``max_steps``."""

    def __init__(
        self, epochs: int, name: str, width: int = 24, max_steps: int | None = None
    ) -> None:
        self.epochs, self.name, self.width, self.max_steps = epochs, name, width, max_steps

    def on_epoch_end(self, report: bpcore.EpochReport) -> None:
        done = round(self.width * report.epoch / self.epochs)
        bar = "#" * done + "-" * (self.width - done)
        line = (
            f"\r{self.name} [{bar}] epoch {report.epoch}/{self.epochs}"
            f"  train loss {report.train_loss:.4g}  val loss {report.val_loss:.4g}"
        )
        end = "\n" if report.epoch == self.epochs or report.step == self.max_steps else ""
        print(line, end=end, file=sys.stderr, flush=True)
