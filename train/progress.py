"""Progress output: one regex-friendly ``name=value;`` line per epoch, and a progress bar when a
person is watching (stderr is a terminal)."""

from __future__ import annotations

import sys


def format_line(values: dict, prefix: str = "") -> str:
    """``prefix`` then ``name=value;`` pairs joined by spaces; floats to 6 significant digits
    (seconds to 3 decimals), so every value matches ``[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?``.
    """
    parts = []
    for name, value in values.items():
        if isinstance(value, float):
            text = f"{value:.3f}" if name.endswith("seconds") else f"{value:.6g}"
        else:
            text = str(value)
        parts.append(f"{name}={text};")
    return prefix + " ".join(parts)


class ProgressBar:
    """A tqdm bar over batches on stderr, only when stderr is a TTY; otherwise it does nothing
    (SageMaker's logs would fill with carriage returns)."""

    def __init__(self, total: int, description: str, initial: int = 0) -> None:
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=description, unit="batch", leave=False
            )

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def set_postfix(self, **values) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
