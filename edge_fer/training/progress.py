"""Progress for long training work: a bar on a terminal, plain lines in a log file or journald
(a bar's cursor escapes garble a log)."""

from __future__ import annotations

import sys

from tqdm import tqdm

ON_TTY = sys.stderr.isatty()


class Steps:
    """A stage's named steps, one after another: `steps("what is next")` marks the one before done."""

    def __init__(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done = stage, total, 0
        self.bar = tqdm(total=total, desc=stage, unit="step", dynamic_ncols=True, disable=not ON_TTY)

    def __call__(self, what: str) -> None:
        if self.done < self.total and self.bar.n < self.done:
            self.bar.update(1)
        self.done += 1
        if ON_TTY:
            self.bar.set_postfix_str(what)
        else:
            print(f"[{self.stage}] {self.done}/{self.total}: {what}", flush=True)

    def close(self) -> None:
        self.bar.update(self.total - self.bar.n)
        self.bar.close()
