"""The named errors of mfrec's training side.

Every error a user can cause (bad data, bad configuration, a corrupt artifact) derives from
:class:`MfrecError`; the two process boundaries (the CLI and the SageMaker entry points) turn it
into one readable line and exit code 1. Anything else is an internal error (exit code 2).
"""

import os


class MfrecError(Exception):
    """Base class of errors caused by the user's input; the message says how to fix it."""


class DataValidationError(MfrecError):
    """Interaction (or item metadata) files cannot be imported as they are.

    ``report`` is the import's :class:`~mfrec.train.ingest.report.DataReport` when the data
    was read but refused (too little of it), so that the job can still write what it read.
    """

    def __init__(self, message: str, report=None) -> None:
        super().__init__(message)
        self.report = report


class ConfigError(MfrecError, ValueError):
    """A hyperparameter or option is unknown or out of range."""


class TrainingDivergedError(MfrecError):
    """The loss became NaN/inf or degenerate during training."""


class DiskFullError(MfrecError):
    """A file could not be written because its disk (or the user's quota) is full."""


def disk_full(exc: OSError, path) -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``path`` when ``exc`` is ENOSPC or EDQUOT, else None."""
    import errno

    if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return DiskFullError(
        f"no space left on device while writing {path}: free space there or give the job a "
        f"larger volume (SageMaker: VolumeSizeInGB; locally: point --model-dir, --output-dir "
        f"or --checkpoint-dir at a disk with room)"
    )


class ArtifactError(MfrecError):
    """A model folder is missing files, was tampered with, or has another format version."""


def write_through_partial(target, partial, write) -> None:
    """``write(partial)``, then rename ``partial`` onto ``target``; on any failure the partial
    file is removed, and a full disk becomes :class:`DiskFullError` naming ``target``."""
    try:
        write(partial)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if (full := disk_full(exc, target)) is None:
            raise
        raise full from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
