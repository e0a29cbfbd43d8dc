"""``mfrec serve`` (the SageMaker serving entry point) and ``mfrec transform`` (batch transform
without SageMaker)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (SageMaker endpoints and batch transform)",
        description="Serve /ping, /invocations and /execution-parameters with gunicorn. "
        "Deployment options come from environment variables (MFREC_*, SAGEMAKER_*): see "
        "docs/serving.md.",
    )
    serve.add_argument(
        "--model-dir",
        type=Path,
        help="model folder (default: $SAGEMAKER_BASE_DIR/model, i.e. /opt/ml/model)",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default $SAGEMAKER_BIND_TO_PORT or 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        help="gunicorn workers (default $SAGEMAKER_MODEL_SERVER_WORKERS or the number of CPUs)",
    )
    serve.set_defaults(func=run_serve)

    transform = subparsers.add_parser(
        "transform",
        help="run a batch transform locally, the way SageMaker does",
        description="Split each input file by line, send the records to a server in "
        "SingleRecord or MultiRecord bodies and write <file>.out (AssembleWith=Line).",
    )
    transform.add_argument("input", type=Path, help="input file, or a folder of input files")
    transform.add_argument("--output", type=Path, required=True, help="folder for the .out files")
    target = transform.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="URL of a running server, e.g. http://127.0.0.1:8080")
    target.add_argument("--model-dir", type=Path, help="start a server for this model")
    transform.add_argument(
        "--strategy",
        choices=("SingleRecord", "MultiRecord"),
        help="BatchStrategy (default: the server's /execution-parameters, else MultiRecord)",
    )
    transform.add_argument(
        "--max-payload-mb",
        type=int,
        help="MaxPayloadInMB, 0 to 100 (default: the server's /execution-parameters, else 6)",
    )
    transform.add_argument(
        "--max-concurrent",
        type=int,
        help="MaxConcurrentTransforms (default: the server's /execution-parameters, else 1)",
    )
    transform.add_argument(
        "--content-type",
        default="application/json",
        help="ContentType of the input (default application/json)",
    )
    transform.add_argument("--accept", default="text/csv", help="Accept (default text/csv)")
    transform.add_argument(
        "--workers", type=int, help="workers of the server started for --model-dir"
    )
    transform.set_defaults(func=run_transform)


def run_serve(args: argparse.Namespace) -> int:
    from mfrec.paths import SageMakerPaths

    model_dir = args.model_dir or SageMakerPaths.from_env().model  # computed when called
    # The model is loaded and checked (its checksums, its arrays: NumPy, which releases the GIL
    # for large arrays) on a thread while torch and the server are imported on this one; serve()
    # waits for it and re-raises what the load raised.
    loading = _load_in_background(model_dir)
    from mfrec.serve.server import serve

    # The events store's default place (mfrec.serve.events): beside the model.
    os.environ["MFREC_MODEL_DIR"] = str(model_dir)
    serve(model_dir, host=args.host, port=args.port, workers=args.workers, artifact=loading)
    return 0


def _load_in_background(model_dir):
    """A future of ``mfrec.train.artifact.load(model_dir)``, computed on a thread."""
    import threading
    from concurrent.futures import Future

    from mfrec.train.artifact import load

    loading: Future = Future()

    def run() -> None:
        try:
            loading.set_result(load(model_dir))
        except BaseException as exc:  # noqa: BLE001 - raised again by serve() in the main thread
            loading.set_exception(exc)

    threading.Thread(target=run, name="model-load", daemon=True).start()
    return loading


def run_transform(args: argparse.Namespace) -> int:
    from mfrec.transform import TransformJob, run

    job = TransformJob(
        content_type=args.content_type,
        accept=args.accept,
        strategy=args.strategy,
        max_payload_mb=args.max_payload_mb,
        max_concurrent=args.max_concurrent,
    )
    report = run(
        args.input,
        args.output,
        job,
        endpoint=args.endpoint,
        model_dir=args.model_dir,
        workers=args.workers,
    )
    print(report.summary())
    return 0
