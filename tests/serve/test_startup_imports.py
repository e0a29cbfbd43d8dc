"""Importing the server loads only what answering needs: the modules below are imported where
they are first used, so that they never delay a server's first ``/ping`` (a 1M-user model's
start-up is measured by benchmarks/serving.py; pandas alone took 0.5 s of it)."""

import json
import subprocess
import sys

# Imported on first use, if ever: data import and training (pandas, pyarrow), the sequence
# model's training code, the events stores' clients, SigV4's botocore, the approximate index,
# the SageMaker SDK, plotting and the benchmarks' peers.
LAZY = (
    "pandas",
    "pyarrow",
    "scipy",
    "matplotlib",
    "faiss",
    "hnswlib",
    "sagemaker",
    "boto3",
    "botocore",
    "redis",
    "sqlite3",
    "mfrec.train.ingest",
    "mfrec.train.loop",
    "mfrec.train.sequence_trainer",
    "mfrec.serve.sequence",
)


def _loaded(lazy: tuple, first: str, then: str) -> tuple[list, list]:
    """Which of ``lazy`` a fresh interpreter has imported after running ``first``, and after
    running ``then`` as well (the second list shows that the check sees imports)."""
    report = "print(json.dumps(sorted(m for m in lazy if m in sys.modules)))"
    code = f"import json, sys; lazy = {lazy!r}; {first}; {report}; {then}; {report}"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    before, after = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    return before, after


def test_importing_the_server_loads_none_of_the_lazily_imported_modules():
    server, then = _loaded(LAZY, "import mfrec.serve.server", "import mfrec.serve.sequence")
    assert server == []
    assert "mfrec.serve.sequence" in then and "mfrec.train.sequence_trainer" in then


def test_building_the_command_line_loads_none_of_them_either():
    # `mfrec serve` builds the whole command line (every subcommand's options) before it imports
    # the server: pandas came in that way once, through the import options' --help choices.
    # The ingest package itself is read (the CLI needs its options' choices), not its importer.
    lazy = tuple(m for m in LAZY if m != "mfrec.train.ingest") + ("mfrec.train.ingest.importer",)
    server, then = _loaded(
        lazy,
        "from mfrec.cli import build_parser; build_parser(); import mfrec.serve.server",
        "from mfrec.train.ingest import load_interactions",
    )
    assert server == []
    assert "pandas" in then and "mfrec.train.ingest.importer" in then
