"""``mfrec transform``: a SageMaker batch transform job on this machine.

It does what SageMaker (and the SageMaker SDK's local mode, its reference here) does with
``SplitType=Line`` and ``AssembleWith=Line``:

1. every file of the input (a file, or every file under a folder) is split into lines;
2. lines are grouped into request bodies: one line each (``SingleRecord``) or as many whole
   lines as fit in ``MaxPayloadInMB`` (``MultiRecord``); a body never spans two files, a line
   is never split, and a line larger than the limit fails its file;
3. the bodies are POSTed to ``/invocations`` with the job's ``Content-Type`` and ``Accept``,
   ``MaxConcurrentTransforms`` at a time; a non-2xx answer (or a broken connection) is retried
   ``max_retries`` times (SageMaker's default: 3), after which the file fails;
4. the answers, in input order and each followed by a newline, become ``<file>.out`` in the
   output folder (the input's relative path kept), written to a fresh temporary file and
   renamed (links in the output folder are replaced, never followed). A failed file gets no
   ``.out``, like in SageMaker; the other files go on and the command then fails.

Settings the user leaves out come from the server's ``/execution-parameters``, else SageMaker's
defaults (MultiRecord, 6 MB, 1 request at a time). Unlike local mode, answers are not stripped
of whitespace: SageMaker does not strip them either, so a trailing newline shows here as the
blank line it would give in S3. The client is the standard library's ``http.client``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from mfrec.invocations import Client, InvocationFailed
from mfrec.local_server import LocalServer, ServerFailed
from mfrec.serve.strategies import MULTI_RECORD, SINGLE_RECORD, STRATEGIES, strategy_name
from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)


class TransformFailed(InvocationFailed):
    """Some input files got no ``.out`` (an answer kept failing, or a record was too large)."""


@dataclass(frozen=True)
class TransformJob:
    """A transform job's settings; ``None`` means the server's choice, else SageMaker's default."""

    content_type: str = "application/json"
    accept: str = "text/csv"
    strategy: str | None = None
    max_payload_mb: int | None = None
    max_concurrent: int | None = None
    max_retries: int = 3
    retry_delay: float = 1.0
    invocation_timeout: float = 600.0  # SageMaker's InvocationsTimeoutInSeconds default

    def __post_init__(self) -> None:
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r}; use SingleRecord or MultiRecord")
        if self.max_payload_mb is not None and not 0 <= self.max_payload_mb <= 100:
            raise ConfigError(f"max_payload_mb={self.max_payload_mb}; use 0 (no limit) to 100")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"max_concurrent={self.max_concurrent}; use 1 or more")

    def resolved(self, parameters: dict) -> TransformJob:
        """Settings left as ``None`` taken from ``/execution-parameters``, else the defaults."""
        return replace(
            self,
            strategy=self.strategy
            or strategy_name(parameters.get("BatchStrategy"))
            or MULTI_RECORD,
            max_payload_mb=_first(self.max_payload_mb, parameters.get("MaxPayloadInMB"), 6),
            max_concurrent=_first(
                self.max_concurrent, parameters.get("MaxConcurrentTransforms"), 1
            ),
        )


def _first(*values) -> int:
    return next(int(v) for v in values if v is not None)


@dataclass
class TransformReport:
    outputs: list[Path] = field(default_factory=list)
    failures: dict[Path, str] = field(default_factory=dict)
    records: int = 0
    requests: int = 0
    seconds: float = 0.0
    request_seconds: float = 0.0  # summed over requests, as the client waited for them
    server_seconds: dict[str, float] = field(default_factory=dict)  # from Server-Timing

    def summary(self) -> str:
        text = (
            f"wrote {len(self.outputs)} .out file(s): {self.records} records in "
            f"{self.requests} requests, {self.seconds:.1f} s"
        )
        if self.server_seconds:
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.server_seconds.items())
            text += f" (requests {self.request_seconds:.1f} s, of which server {steps})"
        return text


def input_files(path: Path, output_dir: Path) -> list[Path]:
    """The input file, or every file under a folder (S3-prefix semantics, the output folder
    left out), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"input {path} does not exist; give a file or a folder of files")
    output_dir = output_dir.resolve()
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and output_dir not in p.resolve().parents
    )
    if not files:
        raise ConfigError(f"input folder {path} holds no files")
    return files


def bodies(path: Path, strategy: str, max_payload_mb: int) -> Iterator[tuple[bytes, int]]:
    """(body, number of lines) for each request of one file; lines keep their newline."""
    limit = max_payload_mb * 1024 * 1024 or float("inf")
    buffer: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if len(line) > limit:
                raise TransformFailed(
                    f"line {number} of {path} has {len(line)} bytes, more "
                    f"than MaxPayloadInMB={max_payload_mb}; raise it"
                )
            if strategy == SINGLE_RECORD:
                yield line, 1
                continue
            if size + len(line) > limit:
                yield b"".join(buffer), len(buffer)
                buffer, size = [], 0
            buffer.append(line)
            size += len(line)
    if buffer:
        yield b"".join(buffer), len(buffer)


NAME_MAX = 255  # bytes of one file name on Linux, macOS and S3-mounted folders alike


def transform_file(
    client: Client, job: TransformJob, source: Path, target: Path, report: TransformReport
) -> None:
    """One input file to ``target``, written to a new temporary file beside it and renamed
    when complete: the temporary file is created exclusively (never an existing file or a
    link planted in the output folder) and the rename replaces ``target`` itself, a link
    included, never the file a link points to."""
    if len(os.fsencode(target.name)) > NAME_MAX:
        raise TransformFailed(
            f"the output name {target.name[:40]}... would be longer than {NAME_MAX} bytes; "
            "give the input file a shorter name"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(prefix=".mfrec-", suffix=".partial", dir=target.parent)
    partial = Path(partial_name)
    os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the output from the user's group
    window = 2 * job.max_concurrent
    pending: deque = deque()
    try:
        with open(handle, "wb") as out, ThreadPoolExecutor(job.max_concurrent) as pool:
            for body, lines in bodies(source, job.strategy, job.max_payload_mb):
                pending.append(pool.submit(client.invoke, body))
                report.records += lines
                report.requests += 1
                while len(pending) >= window or (pending and pending[0].done()):
                    out.write(pending.popleft().result() + b"\n")  # AssembleWith=Line
            while pending:
                out.write(pending.popleft().result() + b"\n")
        os.replace(partial, target)
    except (InvocationFailed, OSError) as exc:  # TransformFailed included
        for future in pending:
            future.cancel()
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise TransformFailed(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def run(
    input_path: Path,
    output_dir: Path,
    job: TransformJob,
    *,
    endpoint: str | None = None,
    model_dir: Path | None = None,
    workers: int | None = None,
) -> TransformReport:
    """Transform every input file through ``endpoint``, or a server started for ``model_dir``."""
    if (endpoint is None) == (model_dir is None):
        raise ConfigError("give either an endpoint URL or a model folder to start a server for")
    files = input_files(Path(input_path), Path(output_dir))
    root = Path(input_path) if Path(input_path).is_dir() else Path(input_path).parent
    started = time.perf_counter()
    with _server(endpoint, model_dir, job, workers) as url:
        client = Client(url, job)
        job = job.resolved(client.execution_parameters())
        client.job = job
        logger.info(
            "transform: %d file(s), %s, MaxPayloadInMB=%d, MaxConcurrentTransforms=%d",
            len(files),
            job.strategy,
            job.max_payload_mb,
            job.max_concurrent,
        )
        report = TransformReport()
        for source in files:
            target = Path(output_dir) / source.relative_to(root).with_name(source.name + ".out")
            try:
                transform_file(client, job, source, target, report)
                report.outputs.append(target)
            except InvocationFailed as exc:
                logger.error("%s failed: %s", source, exc)
                report.failures[source] = str(exc)
        client.close()
    report.seconds = time.perf_counter() - started
    report.request_seconds, report.server_seconds = client.request_seconds, client.server_seconds
    if report.failures:
        first, reason = next(iter(report.failures.items()))
        raise TransformFailed(
            f"{len(report.failures)} of {len(files)} input file(s) got no "
            f".out (first: {first}: {reason}); fix them and run again"
        )
    return report


@contextmanager
def _server(endpoint, model_dir, job: TransformJob, workers, startup_timeout: float = 300.0):
    """``endpoint`` as it is, or a local ``mfrec serve`` for ``model_dir`` (stopped after)."""
    if endpoint is not None:
        yield endpoint
        return
    env = {"SAGEMAKER_BATCH": "true"}
    if job.strategy:
        env["SAGEMAKER_BATCH_STRATEGY"] = STRATEGIES[job.strategy]
    if job.max_payload_mb is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(job.max_payload_mb)
    if job.max_concurrent:
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(job.max_concurrent)
    try:
        server = LocalServer(model_dir, workers=workers, env=env, startup_timeout=startup_timeout)
    except ServerFailed as exc:
        raise TransformFailed(str(exc)) from None
    with server:
        yield server.url
