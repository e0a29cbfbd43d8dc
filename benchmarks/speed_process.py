"""Benchmark T, the two figures ``benchmarks.speed`` does not give (``../shared/BENCHMARKS.md``).

``--part user``: **a user's time to a model.** The wall time of the whole ``mfrec train --data
FILE --model-dir DIR`` process with no hyperparameters (the venv's ``mfrec`` in a subprocess:
interpreter start, imports, CSV import, probes, fits, refit, evaluation and the artifact all
count) against a process that reads the same CSV with pandas and fits implicit's ALS
(``implicit.cpu.als.AlternatingLeastSquares``, 64 factors, 15 iterations, its other defaults,
CPU, all cores as implicit chooses) and saves the factors. The two processes alternate,
``--repeats`` times each, in one run; per process: wall time (``time.perf_counter`` around
start and exit) and peak RSS (the child's ``ru_maxrss``, by ``/usr/bin/time``). mfrec's own
split comes from its ``model.json`` (the model auto chose, each probe's and each candidate fit's
seconds, validation included) and ``metrics.json`` (the refit's epoch seconds); the rest of the
wall time is start-up, imports, CSV import, the split, the final evaluation and the artifact.
The data lives in a temporary folder: ML-100K's ``u.data`` (md5-checked) as a CSV with header
``user_id,item_id,rating,timestamp``, and ``mfrec synth --num-interactions N`` for synthetic
sizes. ALS counts every row as one interaction (repeated pairs add up).

``--part iteration``: **one iALS iteration against implicit's** at the same factors (64), CPU,
``--threads`` (2) each, every system in a process of its own on the whole synthetic dataset:

- ``ials``: ``mfrec.train.ials.IALSTrainer`` with the default solver (``cg``, 3 steps);
  ``ials-cholesky``: the same with ``solver="cholesky"``. Timed: each ``run_epoch()`` call (the
  user and item half-steps and the objective L it computes after them), after the trainer is
  built (its construction is reported as setup); ``objective()`` is also timed on its own.
- ``implicit``: ``AlternatingLeastSquares(factors=64, iterations=N, num_threads=threads)``
  with BLAS at one thread (implicit's advice) on the user × item count matrix. Timed: the
  per-iteration seconds implicit passes to its ``fit`` callback, its own clock around the two
  solver calls of an iteration, so the conversion, transpose and initialisation inside ``fit``
  are excluded (reported as setup: fit's wall time minus the iterations).

Seconds per iteration are the median over the iterations run (also the minimum and the first),
and beside them the process's CPU seconds over the same span (``time.process_time``): on this
shared machine the wall time of a 2-thread run swings with the other jobs' load (implicit's
10M iteration took 3.9 s at load 1.5 and 16 s at load 6), its CPU time far less.
Peak RSS is the worker's own ``VmHWM`` (the interpreter, torch or implicit, the data, the
model; not ``ru_maxrss``, which would include the parent's, see :func:`own_peak_rss_mib`).
The 1-minute load average is sampled every 5 s throughout and reported.

    python -m benchmarks.speed_process --part user                 # ML-100K and synthetic 1M
    python -m benchmarks.speed_process --part iteration            # synthetic 1M and 10M
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import common, speed

logger = logging.getLogger(__name__)

DEFAULT_SIZES = {"user": "ml-100k,1m", "iteration": "1m,10m"}
ITERATION_SYSTEMS = ("ials", "ials-cholesky", "implicit")
FACTORS = 64
ALS_ITERATIONS = 15

# The peer process of --part user: what a user of implicit writes (the CSV read by pandas, a
# count matrix, ALS with BLAS at one thread as implicit advises, the factors saved).
ALS_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import numpy as np, pandas as pd, scipy.sparse as sp, threadpoolctl
from implicit.cpu.als import AlternatingLeastSquares
imported = time.perf_counter()
path, out, factors, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
frame = pd.read_csv(path, usecols=["user_id", "item_id"])
users, user_ids = pd.factorize(frame["user_id"])
items, item_ids = pd.factorize(frame["item_id"])
ones = np.ones(len(frame), dtype=np.float32)
matrix = sp.csr_matrix((ones, (users, items)), shape=(len(user_ids), len(item_ids)))
read = time.perf_counter()
with threadpoolctl.threadpool_limits(1, "blas"):
    model = AlternatingLeastSquares(factors=factors, iterations=iterations, random_state=0)
    model.fit(matrix, show_progress=False)
fitted = time.perf_counter()
np.savez(out, user_ids=np.asarray(user_ids).astype(str), item_ids=np.asarray(item_ids).astype(str),
         user_factors=model.user_factors, item_factors=model.item_factors)
saved = time.perf_counter()
print(json.dumps({"import_seconds": imported - started, "read_seconds": read - imported,
                  "fit_seconds": fitted - read, "save_seconds": saved - fitted,
                  "interactions": len(frame), "users": len(user_ids), "items": len(item_ids)}))
"""


# --------------------------------------------------------------------------------------------
# Load average and child processes


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds until :meth:`stop`."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._done.set()
        self.join()
        self.samples.append(os.getloadavg()[0])
        found = np.asarray(self.samples)
        return {
            "samples": len(found),
            "min": float(found.min()),
            "median": float(np.median(found)),
            "max": float(found.max()),
            "every_seconds": self.every,
        }


def own_peak_rss_mib() -> float:
    """Peak resident memory of this process's own address space, MiB (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's peak into a child's ``ru_maxrss`` across
    fork and exec, so a worker started by a parent holding a large dataset would report at
    least the parent's peak (measured: a ``python -c pass`` child of a 2 GiB parent reports
    2 GiB by ``ru_maxrss`` and ``os.wait4``, 11 MiB by ``VmHWM``).
    """
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return common.peak_rss_mib()


TIME = Path("/usr/bin/time")


def run_process(command: list[str], cwd: Path, log_stem: Path, timeout: float) -> dict:
    """Run ``command`` to its end; its wall seconds, peak RSS (MiB) and stdout.

    The peak is ``/usr/bin/time``'s ``%M``: the child's ``ru_maxrss`` seen from a small parent
    (from this process it would include this process's own peak, see
    :func:`own_peak_rss_mib`); without ``/usr/bin/time``, ``os.wait4``'s, an upper bound.
    stdout and stderr go to ``<log_stem>.out`` / ``.err``; a run past ``timeout`` is killed.
    """
    load = os.getloadavg()[0]
    measured = Path(f"{log_stem}.maxrss")
    if TIME.is_file():
        command = [str(TIME), "-f", "%M", "-o", str(measured), *command]
    with open(f"{log_stem}.out", "w") as out, open(f"{log_stem}.err", "w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err)
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            _pid, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = Path(f"{log_stem}.err").read_text()[-3000:]
        raise RuntimeError(f"exit {process.returncode} after {wall:.0f} s: {command}\n{tail}")
    peak = int(measured.read_text().split()[-1]) if measured.is_file() else usage.ru_maxrss
    return {
        "wall_seconds": wall,
        "peak_rss_mib": peak / 1024,
        "peak_rss_by": "/usr/bin/time %M" if measured.is_file() else "os.wait4 (upper bound)",
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_at_start": load,
        "stdout": Path(f"{log_stem}.out").read_text(),
    }


# --------------------------------------------------------------------------------------------
# Part "user": a user's time to a model


def mfrec_executable() -> Path:
    found = Path(sys.executable).parent / "mfrec"
    if not found.is_file():
        raise SystemExit(f"{found} not found: run with the project's environment (.venv/bin)")
    return found


def user_csv(size: str, work: Path, data_dir: str | None) -> Path:
    """The dataset as a CSV file in ``work`` (never in the repository)."""
    path = work / f"{size}.csv"
    if size == "ml-100k":
        source = common.ml100k_dir(data_dir) / "u.data"  # md5-checked
        text = source.read_text().replace("\t", ",")
        path.write_text("user_id,item_id,rating,timestamp\n" + text)
    else:
        command = [str(mfrec_executable()), "synth", "--out", str(path)]
        command += ["--num-interactions", str(speed.parse_size(size))]
        subprocess.run(command, check=True, capture_output=True, cwd=work)
    return path


def mfrec_split(model_dir: Path, output_dir: Path, wall: float) -> dict:
    """Where an ``mfrec train`` process spent its time, from its model.json and metrics.json."""
    metrics = json.loads((model_dir / "model.json").read_text())["metrics"]
    history = json.loads((output_dir / "metrics.json").read_text()).get("history", [])
    probes, counts = {"ials": 0.0, "sgd": 0.0}, {"ials": 0, "sgd": 0}
    for probe in metrics.get("probes", []):
        probes[probe["model"]] = probes.get(probe["model"], 0.0) + probe["seconds"]
        counts[probe["model"]] = counts.get(probe["model"], 0) + 1
    fits = {model: found["seconds"] for model, found in metrics.get("model_search", {}).items()}
    if not fits:  # one candidate: its fit epochs
        fit_epochs = [r for r in history if r.get("phase") != "refit"]
        fits = {metrics.get("model"): sum(r.get("epoch_seconds", 0.0) for r in fit_epochs)}
    refit = sum(r.get("epoch_seconds", 0.0) for r in history if r.get("phase") == "refit")
    accounted = sum(probes.values()) + sum(fits.values()) + refit
    return {
        "model": metrics.get("model"),
        "probe_seconds": probes,
        "probes": counts,
        "fit_seconds": fits,
        "fit_valid_ndcg@10": {m: f["ndcg@10"] for m, f in metrics.get("model_search", {}).items()},
        "refit_seconds": refit,
        "other_seconds": wall - accounted,
        "valid_ndcg@10": metrics.get("mfrec", {}).get("ndcg@10"),
    }


def run_user(size: str, args, work: Path) -> dict:
    """``--repeats`` mfrec processes and ALS processes on one dataset, alternating."""
    folder = work / size
    folder.mkdir()
    csv = user_csv(size, folder, args.data_dir)
    found = {"csv_bytes": csv.stat().st_size, "mfrec": [], "als": [], "notes": []}
    has_als = common.has_module("implicit")
    if not has_als:
        found["notes"].append(f"{size}: ALS skipped (`implicit` is not installed)")
    for rep in range(1, args.repeats + 1):
        model_dir, output_dir = folder / f"model-{rep}", folder / f"output-{rep}"
        command = [str(mfrec_executable()), "train", "--data", str(csv)]
        command += ["--model-dir", str(model_dir), "--output-dir", str(output_dir)]
        if args.mfrec_set:
            command += ["--set", *args.mfrec_set]
        logger.info("%s: mfrec train, repetition %d ...", size, rep)
        run = run_process(command, folder, folder / f"mfrec-{rep}", args.timeout)
        del run["stdout"]  # the metric lines; the split comes from the files
        run.update(mfrec_split(model_dir, output_dir, run["wall_seconds"]))
        found["mfrec"].append(run)
        logger.info("%s: mfrec %.1f s, %s", size, run["wall_seconds"], run["model"])
        if has_als:
            command = [sys.executable, "-c", ALS_SCRIPT, str(csv), str(folder / f"als-{rep}.npz")]
            command += [str(FACTORS), str(args.als_iterations)]
            run = run_process(command, folder, folder / f"als-{rep}", args.timeout)
            run.update(json.loads(run.pop("stdout").strip().splitlines()[-1]))
            found["als"].append(run)
            logger.info("%s: ALS %.1f s", size, run["wall_seconds"])
    walls = {name: [r["wall_seconds"] for r in found[name]] for name in ("mfrec", "als")}
    found["median_wall_seconds"] = {n: _median(v) for n, v in walls.items()}
    found["mfrec_over_als"] = speed.ratio(*found["median_wall_seconds"].values())
    found["mfrec_over_als_per_repetition"] = [
        m / a for m, a in zip(walls["mfrec"], walls["als"], strict=False)
    ]
    found["target_met"] = None if found["mfrec_over_als"] is None else found["mfrec_over_als"] <= 1
    return found


def user_tables(results: dict) -> list[common.Table]:
    summary = common.Table(
        title="T — a user's time to a model: whole processes, medians of the repetitions",
        columns=[
            "dataset",
            "mfrec train s: median [all]",
            "ALS process s: median [all]",
            "mfrec ÷ ALS (target ≤ 1)",
            "peak RSS MiB mfrec / ALS (max)",
            "auto chose",
        ],
    )
    split = common.Table(
        title="T — where mfrec's process spent its time (s; probes and fits include validation)",
        columns=[
            "dataset",
            "rep",
            "wall",
            "model",
            "probes iALS (n)",
            "probes SGD (n)",
            "fit iALS",
            "fit SGD",
            "refit",
            "rest",
            "VALID NDCG@10 iALS / SGD",
            "load at start",
        ],
    )
    peer = common.Table(
        title="T — the ALS processes (s)",
        columns=["dataset", "rep", "wall", "import", "read CSV", "fit", "save", "peak RSS MiB"],
    )
    for size, found in results.items():
        mfrec, als = found["mfrec"], found["als"]
        ratio = found["mfrec_over_als"]
        summary.rows.append(
            [
                size,
                _with_all(found["median_wall_seconds"]["mfrec"], mfrec),
                _with_all(found["median_wall_seconds"]["als"], als),
                "–"
                if ratio is None
                else f"{ratio:.2f}" + (" (met)" if ratio <= 1 else " (NOT met)"),
                " / ".join(
                    f"{max(r['peak_rss_mib'] for r in runs):.0f}" if runs else "–"
                    for runs in (mfrec, als)
                ),
                ", ".join(sorted({str(r["model"]) for r in mfrec})),
            ]
        )
        for rep, run in enumerate(mfrec, 1):
            ndcg = run["fit_valid_ndcg@10"]
            split.rows.append(
                [
                    size,
                    rep,
                    run["wall_seconds"],
                    str(run["model"]),
                    *(
                        f"{run['probe_seconds'].get(m, 0.0):.1f} ({run['probes'].get(m, 0)})"
                        for m in ("ials", "sgd")
                    ),
                    run["fit_seconds"].get("ials"),
                    run["fit_seconds"].get("sgd"),
                    run["refit_seconds"],
                    run["other_seconds"],
                    " / ".join(
                        "–" if ndcg.get(m) is None else f"{ndcg[m]:.4f}" for m in ("ials", "sgd")
                    ),
                    f"{run['load_at_start']:.2f}",
                ]
            )
        for rep, run in enumerate(als, 1):
            peer.rows.append(
                [
                    size,
                    rep,
                    run["wall_seconds"],
                    run["import_seconds"],
                    run["read_seconds"],
                    run["fit_seconds"],
                    run["save_seconds"],
                    run["peak_rss_mib"],
                ]
            )
        summary.notes.extend(found["notes"])
    split.notes.append(
        "rest = wall − probes − fits − refit: interpreter start, imports, CSV import, the "
        "split, evaluation outside the fits and writing the artifact; a fit's seconds are the "
        "search's (validation included) when both models were fitted, else the sum of its "
        "epochs"
    )
    return [summary, split, peer]


def _with_all(median, runs) -> str:
    if median is None:
        return "–"
    return f"{median:.1f} [" + ", ".join(f"{r['wall_seconds']:.1f}" for r in runs) + "]"


def _median(values):
    return float(statistics.median(values)) if values else None


# --------------------------------------------------------------------------------------------
# Part "iteration": one iALS iteration against implicit's


def prepared_full(size: str, args) -> Path:
    """The whole synthetic dataset as user and item indices in one ``.npz`` (beside the CSV,
    never in the repository), so that every worker loads it in seconds."""
    folder = Path(args.synth_dir)
    path = folder / f"full-{size}-seed{args.seed}.npz"
    if not path.is_file():
        started = time.perf_counter()
        data = speed.load(size, folder, args.data_dir)
        partial = path.with_suffix(".partial.npz")
        np.savez(
            partial,
            user_idx=data.user_idx,
            item_idx=data.item_idx,
            shape=np.array([data.num_users, data.num_items]),
        )
        partial.replace(path)
        logger.info("prepared %s in %.1f s", path, time.perf_counter() - started)
    return path


def load_full(path: Path):
    from mfrec.train.interactions import Interactions

    with np.load(path) as arrays:
        num_users, num_items = (int(n) for n in arrays["shape"])
        return Interactions(
            user_idx=arrays["user_idx"],
            item_idx=arrays["item_idx"],
            user_ids=np.arange(num_users).astype(str),
            item_ids=np.arange(num_items).astype(str),
        )


def synchronize(device) -> None:
    """Wait for a GPU's queued work (a CPU has none)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ials(data, params, iterations: int, device: str = "cpu") -> dict:
    """Seconds (wall and CPU) of building an IALSTrainer with ``params`` on ``device`` and of
    each of ``iterations`` iterations, waiting for a GPU's queue before each reading."""
    import torch

    from mfrec.train.ials import IALSTrainer

    device = torch.device(device)
    started = time.perf_counter()
    trainer = IALSTrainer(data, params, device)
    synchronize(device)
    setup = time.perf_counter() - started
    times, cpu_times, losses = [], [], []
    for _ in range(iterations):
        started, cpu_started = time.perf_counter(), time.process_time()
        losses.append(trainer.run_epoch())
        synchronize(device)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    started = time.perf_counter()
    trainer.objective()
    synchronize(device)
    objective = time.perf_counter() - started
    return {
        "setup_seconds": setup,
        "iteration_seconds": times,
        "iteration_cpu_seconds": cpu_times,
        "objective_seconds": objective,
        "losses": losses,
        "settings": {"solver": params.solver, "cg_steps": params.cg_steps},
    }


def time_implicit(data, args) -> dict:
    import threadpoolctl
    from implicit.cpu.als import AlternatingLeastSquares

    from benchmarks import peers

    started = time.perf_counter()
    matrix = peers.user_item_matrix(data, binary=False)
    matrix_seconds = time.perf_counter() - started
    times, clock = [], [time.process_time()]

    def on_iteration(_iteration, elapsed, _loss):
        times.append(elapsed)
        clock.append(time.process_time())

    with threadpoolctl.threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=args.factors,
            iterations=args.iterations,
            random_state=0,
            num_threads=args.threads,
        )
        started = time.perf_counter()
        clock[0] = time.process_time()
        model.fit(matrix, show_progress=False, callback=on_iteration)
        fit = time.perf_counter() - started
    settings = {name: getattr(model, name) for name in ("regularization", "alpha", "cg_steps")}
    return {
        "setup_seconds": fit - sum(times),
        "matrix_seconds": matrix_seconds,
        "fit_seconds": fit,
        "iteration_seconds": times,
        # Between callbacks; the first also holds fit's conversion and initialisation.
        "iteration_cpu_seconds": list(np.diff(clock)),
        "settings": settings,
    }


def worker(args) -> int:
    """One system of ``--part iteration`` on one dataset, in this process."""
    common.set_threads(args.threads)
    data = load_full(prepared_full(args.size, args))
    rss_before = common.current_rss_mib()
    if args.worker == "implicit":
        found = time_implicit(data, args)
    else:
        from mfrec.train.ials import IALSParams

        solver = "cholesky" if args.worker == "ials-cholesky" else "cg"
        params = IALSParams(embedding_dim=args.factors, solver=solver)
        found = time_ials(data, params, args.iterations)
    times = found["iteration_seconds"]
    found.update(
        system=args.worker,
        size=args.size,
        interactions=len(data),
        num_users=data.num_users,
        num_items=data.num_items,
        median_seconds=float(np.median(times)),
        median_cpu_seconds=float(np.median(found["iteration_cpu_seconds"])),
        min_seconds=float(min(times)),
        first_seconds=times[0],
        rss_before_mib=rss_before,
        peak_rss_mib=own_peak_rss_mib(),
    )
    Path(args.result_file).write_text(json.dumps(found, default=float))
    return 0


def run_iteration(size: str, args) -> dict:
    prepared_full(size, args)
    found = {"systems": {}, "notes": []}
    for system in args.systems.split(","):
        if system == "implicit" and not common.has_module("implicit"):
            found["notes"].append(f"{size}: implicit skipped (`implicit` is not installed)")
            continue
        logger.info("%s on %s ...", system, size)
        passed = ["--worker", system, "--size", size, "--synth-dir", args.synth_dir]
        for name in ("threads", "iterations", "factors", "seed"):
            passed += [f"--{name}", str(getattr(args, name))]
        try:
            found["systems"][system] = common.run_worker(
                "benchmarks.speed_process", passed, args.timeout, in_process=args.in_process
            )
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            found["notes"].append(f"{size}: {system} did not finish: {str(exc)[:300]}")
    implicit = found["systems"].get("implicit")
    for system, summary in found["systems"].items():
        if system != "implicit" and implicit:
            summary["over_implicit"] = summary["median_seconds"] / implicit["median_seconds"]
            summary["cpu_over_implicit"] = (
                summary["median_cpu_seconds"] / implicit["median_cpu_seconds"]
            )
    return found


def iteration_table(results: dict, args) -> common.Table:
    table = common.Table(
        title=f"T — one iteration at {args.factors} factors, CPU, {args.threads} thread(s) each",
        columns=[
            "dataset",
            "system",
            "s / iteration: median [min]",
            "first",
            "÷ implicit (target ≤ 1)",
            "CPU s / iteration (÷ implicit)",
            "setup s",
            "objective s",
            "peak RSS MiB (data loaded)",
        ],
    )
    for size, found in results.items():
        for system, s in found["systems"].items():
            ratio, cpu_ratio = s.get("over_implicit"), s.get("cpu_over_implicit")
            table.rows.append(
                [
                    f"{size} ({s['interactions']:,})",
                    system + (" (default)" if system == "ials" else ""),
                    f"{s['median_seconds']:.3f} [{s['min_seconds']:.3f}]",
                    s["first_seconds"],
                    "–" if ratio is None else f"{ratio:.2f}" + (" (met)" if ratio <= 1 else ""),
                    f"{s['median_cpu_seconds']:.3f}"
                    + ("" if cpu_ratio is None else f" ({cpu_ratio:.2f})"),
                    s["setup_seconds"],
                    s.get("objective_seconds"),
                    f"{s['peak_rss_mib']:.0f} ({s['rss_before_mib']:.0f})",
                ]
            )
        table.notes.extend(found["notes"])
    table.notes.append(
        f"median over {args.iterations} iterations; mfrec: each IALSTrainer.run_epoch() (user "
        "and item half-steps plus the objective L it returns; 'objective s' is that L alone), "
        "setup = building the trainer; implicit: the per-iteration seconds its fit passes to "
        "the callback (the two solver calls), setup = fit's wall time minus them (conversion, "
        "transpose, initialisation); ratios from medians. CPU s: the process's CPU time over "
        "the same span (implicit: between its callbacks), median; it does not count the time "
        "other jobs hold the cores, so it varies less with the load than the wall time (with "
        "2 threads it includes the time a thread spins waiting for the other)"
    )
    return table


# --------------------------------------------------------------------------------------------
# The run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed_process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--part", choices=("user", "iteration"), help="which figure")
    parser.add_argument("--sizes", help="ml-100k and synthetic sizes (default: by part)")
    parser.add_argument("--repeats", type=int, default=3, help="user: processes of each kind")
    parser.add_argument("--als-iterations", type=int, default=ALS_ITERATIONS, help="user: ALS")
    parser.add_argument(
        "--mfrec-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="user: pass to mfrec train as --set (smoke tests only; the protocol sets none)",
    )
    parser.add_argument("--systems", default=",".join(ITERATION_SYSTEMS), help="iteration")
    parser.add_argument("--iterations", type=int, default=5, help="iteration: per system")
    parser.add_argument("--factors", type=int, default=FACTORS, help="iteration")
    parser.add_argument("--threads", type=int, default=2, help="iteration: per system")
    parser.add_argument("--data-dir", help="folder with MovieLens 100K's u.data")
    parser.add_argument("--synth-dir", default=str(speed.DATA_DIR), help="iteration: data cache")
    parser.add_argument("--work-dir", help="user: keep the CSVs, models and logs here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per process, seconds")
    parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
    parser.add_argument("--in-process", action="store_true", help="iteration: smoke tests")
    parser.add_argument("--worker", choices=ITERATION_SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.worker:
        return worker(args)
    if args.part is None:
        parser.error("--part user or --part iteration is required")
    args.sizes = args.sizes or DEFAULT_SIZES[args.part]
    for size in args.sizes.split(","):
        try:
            speed.parse_size(size)
        except ValueError as exc:
            parser.error(str(exc))
    unknown = set(args.systems.split(",")) - set(ITERATION_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {ITERATION_SYSTEMS}")
    header = common.run_header(f"speed_process-{args.part}", "benchmarks.speed_process", argv)
    sampler = LoadSampler()
    sampler.start()
    if args.part == "user":
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="mfrec-speed-process-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            results = {size: run_user(size, args, work) for size in args.sizes.split(",")}
        finally:
            if not args.work_dir:
                shutil.rmtree(work, ignore_errors=True)
        tables = user_tables(results)
        notes = [
            "mfrec: `mfrec train --data FILE --model-dir DIR --output-dir DIR"
            + (f" --set {' '.join(args.mfrec_set)}`" if args.mfrec_set else "`, no hyperparameters")
            + f"; ALS: pandas + implicit.cpu.als, {FACTORS} factors, {args.als_iterations} "
            "iterations, implicit's other defaults, all cores; alternating, "
            f"{args.repeats} of each; wall = process start to exit, peak RSS = the child's "
            "ru_maxrss by /usr/bin/time",
        ]
    else:
        results = {size: run_iteration(size, args) for size in args.sizes.split(",")}
        tables = [iteration_table(results, args)]
        notes = [
            f"CPU, {args.threads} thread(s) per system (torch and implicit), each in its own "
            "process on the whole synthetic dataset (seed 0); peak RSS = the worker's own "
            "VmHWM (ru_maxrss would include the parent's peak), in brackets its RSS with the "
            "data loaded, before the timed part"
        ]
    load = sampler.stop()
    notes.append(
        f"1-minute load average during the run (sampled every {load['every_seconds']:g} s, "
        f"{load['samples']} samples): min {load['min']:.2f}, median {load['median']:.2f}, "
        f"max {load['max']:.2f} on {os.cpu_count()} cores; other jobs may share the machine: "
        "compare the ratios within this run"
    )
    payload = {"part": args.part, "datasets": results, "load_average": load}
    return common.write_and_print(header, tables, payload, notes, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
