"""Progress output: a progress bar when a person is watching (stderr is a terminal).

The metric lines themselves are :mod:`mfrec.train.metric_lines`'s."""

from __future__ import annotations

import sys


class ProgressBar:
    """A tqdm bar over batches on stderr, only when stderr is a TTY; otherwise it does nothing
    (SageMaker's logs would fill with carriage returns)."""

    def __init__(self, total: int, description: str, initial: int = 0, unit="batch") -> None:
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=description, unit=unit, leave=False)

    def update(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def set_postfix(self, **values) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
