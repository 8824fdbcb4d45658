"""The progress bar of the long-running commands (import_subscribers, bulk_action)."""

import time


class ProgressBar:
    """A bar, its percent, a count and its rate, redrawn in place on a terminal.

    `total` is what `show(done)` is measured against (bytes of a file, subscribers of
    a set); `count` is the figure printed with `unit`, `done` when not given. Where the
    output is not a terminal (a log, a pipe), each update is a line of its own.
    """

    WIDTH = 30

    def __init__(self, out, total, *, unit="rows"):
        self.out, self.total, self.unit = out, max(total, 1), unit
        self.started, self.drawn = time.monotonic(), False
        self.interactive = out.isatty()

    def show(self, done, *, count=None):
        count = done if count is None else count
        elapsed = max(time.monotonic() - self.started, 1e-6)
        share = min(done / self.total, 1.0)
        filled = int(self.WIDTH * share)
        line = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%}  {count:,} {self.unit}  "
                f"{count / elapsed:,.0f} {self.unit}/s")
        if self.interactive:
            self.out.write("\r" + line, ending="")
            self.out.flush()
        else:
            self.out.write(line)
        self.drawn = True

    def finish(self):
        if self.drawn and self.interactive:
            self.out.write("")
