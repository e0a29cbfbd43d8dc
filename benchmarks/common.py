"""What every benchmark shares: the machine and versions it ran on, its data, its result files.

Each run writes ``benchmarks/results/<benchmark>-<YYYYMMDD-HHMM>.json`` (everything, machine
readable) and a ``.md`` twin (the tables the README shows), both carrying the machine, the
versions, the git commit and the exact command, so a number can always be traced to its run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mfrec.train.errors import DataValidationError
from mfrec.train.interactions import Interactions

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
ML100K_DIR = REPO.parent / "shared" / "data" / "ml-100k"
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "6e47046882bad158b0efbb84cd5cb987"  # u.data, from GroupLens' distribution


@dataclass
class Table:
    """A result table: ``rows`` are lists of cells in ``columns`` order (numbers or text)."""

    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        # Text columns align left, numbers right.
        first = self.rows[0] if self.rows else [""] * len(self.columns)
        align = ["---" if isinstance(cell, str) else "---:" for cell in first]
        lines.append("|" + "|".join(align) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
        lines.extend([""] + [f"- {note}" for note in self.notes] if self.notes else [])
        return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Where and how a run happened


def machine_info() -> dict:
    """CPU model, cores (all and usable by this process), RAM, GPU if any, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": round(ram_gib, 1),
        "os": platform.platform(),
        "gpu": None,
    }
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
        }
    return info


def versions() -> dict:
    """Versions of python and the libraries that a benchmark's numbers depend on."""
    import mfrec

    found = {"python": platform.python_version(), "mfrec": mfrec.__version__}
    for name in ("torch", "numpy", "pandas", "scipy", "implicit"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = None
    return found


def git_commit() -> dict:
    """The commit, whether train/ or benchmarks/ differ from it, and a digest of their code."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    status = git("status", "--porcelain", "--", "train", "benchmarks")
    # The digest identifies the exact training and benchmark code even when it is uncommitted.
    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("train/*.py"), *REPO.glob("benchmarks/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(status),
        "code_sha256": digest.hexdigest()[:16],
    }


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces a run, e.g. ``python -m benchmarks.quality --budget 8``."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", module, *map(shlex.quote, args)])


def run_header(benchmark: str, module: str, argv: list[str] | None) -> dict:
    return {
        "benchmark": benchmark,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(module, argv),
        "machine": machine_info(),
        "versions": versions(),
        "git": git_commit(),
    }


def write_results(
    header: dict,
    tables: list[Table],
    results: dict,
    notes: list[str],
    out_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``<benchmark>-<YYYYMMDD-HHMM>.json`` and ``.md`` into ``out_dir``.

    Returns
    -------
    json_path, md_path : Path
    """
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{header['benchmark']}-{datetime.now().strftime('%Y%m%d-%H%M')}"
    suffix = 1
    while (out_dir / f"{stem}.json").exists():  # two runs in the same minute
        suffix += 1
        stem = stem.split("~")[0] + f"~{suffix}"
    payload = {
        **header,
        "notes": notes,
        "tables": [asdict(table) for table in tables],
        "results": results,
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(to_markdown(payload, tables))
    return json_path, md_path


def write_and_print(
    header: dict,
    tables: list[Table],
    results: dict,
    notes: list[str],
    out_dir: str | os.PathLike | None = None,
) -> int:
    """:func:`write_results`, then print the Markdown and both file names; returns 0, the
    benchmark scripts' exit code."""
    json_path, md_path = write_results(header, tables, results, notes, out_dir)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_markdown(payload: dict, tables: list[Table]) -> str:
    machine = payload["machine"]
    gpu = machine["gpu"]["name"] if machine.get("gpu") else "no GPU"
    ver = payload["versions"]
    lines = [
        f"## {payload['benchmark']} — {payload['created']}",
        "",
        f"- command: `{payload['command']}`",
        f"- machine: {machine['cpu']}, {machine['cores_usable']} of {machine['cores']} cores "
        f"usable, {machine['ram_gib']} GiB RAM, {gpu}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v is not None),
        f"- git: {payload['git']['commit']}"
        + (" (train/ or benchmarks/ uncommitted)" if payload["git"]["dirty"] else "")
        + f", code digest {payload['git'].get('code_sha256')}",
    ]
    lines.extend(f"- {note}" for note in payload["notes"])
    lines.append("")
    return "\n".join(lines) + "\n" + "\n".join(table.to_markdown() for table in tables)


# --------------------------------------------------------------------------------------------
# Processes and threads


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_BLAS_LIMITS = []


def set_threads(num_threads: int) -> None:
    """Give torch and the BLAS libraries the same number of threads (shared machines)."""
    import torch

    torch.set_num_threads(num_threads)
    try:
        import threadpoolctl

        _BLAS_LIMITS.append(threadpoolctl.threadpool_limits(num_threads))
    except ImportError:
        pass


def restore_threads(torch_threads: int) -> None:
    """Undo :func:`set_threads` (after a worker ran inside another process)."""
    import torch

    torch.set_num_threads(torch_threads)
    while _BLAS_LIMITS:
        _BLAS_LIMITS.pop().restore_original_limits()


def run_worker(
    module: str, args: list[str], timeout: float | None = None, in_process: bool = False
) -> dict:
    """Run ``python -m module args --result-file F`` in a fresh process and return F's JSON.

    A fresh process per system keeps one system's memory and caches out of another's
    measurements: the worker reports its own ``ru_maxrss``. ``in_process`` calls the module's
    ``main`` here instead (for smoke tests: quicker, but the memory figures are not isolated).
    """
    with tempfile.TemporaryDirectory(prefix="mfrec-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        args = [*args, "--result-file", str(result_file)]
        command = [sys.executable, "-m", module, *args]
        started = time.perf_counter()
        if in_process:
            import importlib

            import torch

            threads = torch.get_num_threads()
            try:
                returncode, stderr = importlib.import_module(module).main(args), ""
            finally:
                restore_threads(threads)
        else:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            done = subprocess.run(
                command, cwd=REPO, env=env, timeout=timeout, capture_output=True, text=True
            )
            returncode, stderr = done.returncode, done.stderr
        if returncode != 0 or not result_file.is_file():
            raise RuntimeError(
                f"benchmark worker failed (exit {returncode}): {shlex.join(command)}\n"
                + stderr[-3000:]
            )
        result = json.loads(result_file.read_text())
        result["process_seconds"] = time.perf_counter() - started
        result["own_process"] = not in_process
        return result


# --------------------------------------------------------------------------------------------
# Data


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ml100k_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """A folder holding MovieLens 100K's ``u.data``, checked against GroupLens' md5.

    Looks in ``data_dir``, then ``../shared/data/ml-100k`` beside the checkout, then the cache
    ``~/.cache/mfrec/ml-100k``; downloads GroupLens' zip into the cache when none has it. The
    data is never copied into the repository (its license forbids redistribution).
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfrec" / "ml-100k"
    candidates = [Path(data_dir)] if data_dir else [ML100K_DIR, cache]
    for folder in candidates:
        if (folder / "u.data").is_file():
            if md5(folder / "u.data") != ML100K_MD5:
                raise DataValidationError(
                    f"{folder / 'u.data'} is not GroupLens' MovieLens 100K (md5 differs); "
                    "point --data-dir at an unmodified copy or delete it to download one"
                )
            return folder
    if data_dir:
        raise DataValidationError(f"{data_dir} holds no u.data; pass the ml-100k folder")
    _download_ml100k(cache)
    return cache


def _download_ml100k(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "ml-100k.zip"
        try:
            urllib.request.urlretrieve(ML100K_URL, archive)
        except OSError as exc:
            raise DataValidationError(
                f"MovieLens 100K is not in {ML100K_DIR} and downloading {ML100K_URL} failed "
                f"({exc}); download it by hand and pass --data-dir"
            ) from None
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)
        if md5(Path(tmp) / "ml-100k" / "u.data") != ML100K_MD5:
            raise DataValidationError(f"{ML100K_URL} gave a u.data whose md5 is not {ML100K_MD5}")
        os.replace(Path(tmp) / "ml-100k", target)


def load_ml100k(data_dir: str | os.PathLike | None = None) -> Interactions:
    """MovieLens 100K as interactions: every rating counts, in file order, with timestamps."""
    import pandas as pd

    path = ml100k_dir(data_dir) / "u.data"
    frame = pd.read_csv(path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    return Interactions.from_ids(frame.user_id, frame.item_id, timestamps=frame.timestamp)


def current_rss_mib() -> float:
    """Resident memory of this process now, MiB (Linux /proc; 0.0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
