"""SageMaker's batch strategies, named once: as its API spells them (``SingleRecord``,
``MultiRecord``: CreateTransformJob's ``BatchStrategy``) and as its containers see them
(``SINGLE_RECORD``, ``MULTI_RECORD``: ``SAGEMAKER_BATCH_STRATEGY`` and
``/execution-parameters``)."""

from __future__ import annotations

SINGLE_RECORD = "SingleRecord"
MULTI_RECORD = "MultiRecord"
# API name -> the container's spelling.
STRATEGIES = {SINGLE_RECORD: "SINGLE_RECORD", MULTI_RECORD: "MULTI_RECORD"}


def strategy_name(text: str | None) -> str | None:
    """The API name for any spelling (``MultiRecord``, ``MULTI_RECORD``, ``multirecord``...);
    None when ``text`` is empty or not a batch strategy."""
    wanted = str(text or "").replace("_", "").upper()
    return next((name for name in STRATEGIES if name.upper() == wanted), None)
