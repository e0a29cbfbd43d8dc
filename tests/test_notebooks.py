"""The notebooks: 01 runs top to bottom offline; 02's structure is valid, its AWS cells are
marked, and its other cells (which build the requests) run without AWS.

Cells run in a Jupyter kernel started with this environment's python (a kernelspec written to a
temporary JUPYTER_PATH), from a temporary folder, with MFREC_WORK pointing there too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from sagemaker_sdk import SKIP_WITHOUT_SDK, as_the_sdk_writes_it, offline_session, sent

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "mfrec-tests"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec running ``sys.executable``, and an environment without AWS credentials."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MFREC_WORK", str(tmp_path / "work"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def execute(notebook, cwd: Path, timeout: int = 120):
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=timeout,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def read(name: str):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    return notebook


@pytest.mark.parametrize("name", ["01_quickstart_local.ipynb", "02_sagemaker.ipynb"])
def test_outputs_are_stripped(name):
    for cell in read(name).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_sagemaker_notebook_marks_every_aws_cell():
    code = [cell for cell in read("02_sagemaker.ipynb").cells if cell.cell_type == "code"]
    aws_calls = ("make_client", "boto3", "subprocess.run", "start_", "create_", "wait_for_job")
    for cell in code:
        tags = set(cell.metadata.get("tags", []))
        assert len(tags & {"aws", "no-aws"}) == 1, cell.source[:80]
        if "aws" in tags:
            assert cell.source.startswith("# AWS: "), cell.source[:80]
        else:
            assert not any(call in cell.source for call in aws_calls), cell.source[:80]
    assert sum("aws" in c.metadata["tags"] for c in code) >= 6


def test_sagemaker_notebook_builds_its_requests_offline(kernel_env):
    notebook = read("02_sagemaker.ipynb")
    notebook.cells = [
        cell
        for cell in notebook.cells
        if cell.cell_type == "markdown" or "no-aws" in cell.metadata.get("tags", [])
    ]
    check = nbformat.v4.new_code_cell(
        "assert training['AlgorithmSpecification']['TrainingImage'] == IMAGE_URI\n"
        "assert transform['TransformInput']['SplitType'] == 'Line'\n"
        "assert tuning['TrainingJobDefinition']['AlgorithmSpecification'] == "
        "training['AlgorithmSpecification']\n"
        "print(len((WORK / 'requests.jsonl').read_text().splitlines()))"
    )
    notebook.cells.append(check)
    executed = execute(notebook, kernel_env)
    assert executed.cells[-1].outputs[0]["text"].strip() == "20"


@SKIP_WITHOUT_SDK
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sagemaker_notebook_sdk_cells_send_the_offline_requests(monkeypatch, tmp_path):
    """The notebook's SDK v3 cells (tag ``sdk``), run in this process against an offline
    session, send exactly the requests its offline cells print (up to the SDK's job name and
    its written-out defaults, :func:`sagemaker_sdk.as_the_sdk_writes_it`)."""
    monkeypatch.setenv("MFREC_WORK", str(tmp_path / "work"))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "notebook"}
    requests = {}
    for cell in read("02_sagemaker.ipynb").cells:
        tags = cell.metadata.get("tags", [])
        if "no-aws" in tags:
            exec(cell.source, namespace)
        elif "sdk" in tags:
            namespace["session"] = offline_session(monkeypatch, tmp_path)
            operation, params = sent(lambda source=cell.source: exec(source, namespace))
            requests[operation] = params
    name = requests["CreateTrainingJob"]["TrainingJobName"]
    assert name.startswith("mfrec-")
    training = as_the_sdk_writes_it({**namespace["training"], "TrainingJobName": name})
    assert requests == {
        "CreateTrainingJob": training,
        "CreateModel": namespace["model"],
        "CreateTransformJob": namespace["transform"],
        "CreateEndpointConfig": namespace["endpoint_config"],
        "CreateEndpoint": namespace["endpoint"],
    }


ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


@pytest.mark.parametrize(
    "dataset",
    ["embedded", pytest.param("ml-100k", marks=[pytest.mark.ml100k, pytest.mark.slow])],
)
def test_quickstart_runs_top_to_bottom(kernel_env, monkeypatch, dataset):
    cwd = kernel_env
    if dataset == "ml-100k":  # found beside the checkout, from the notebook's own folder
        monkeypatch.delenv("MOVIELENS_DIR", raising=False)
        cwd = NOTEBOOKS
    else:  # a folder without u.data: the notebook falls back to the embedded dataset
        monkeypatch.setenv("MOVIELENS_DIR", str(kernel_env / "no-movielens"))
    monkeypatch.setenv("MFREC_QUICK", "1")
    executed = execute(read("01_quickstart_local.ipynb"), cwd, timeout=300)
    data_line = executed.cells[1].outputs[-1]["text"]  # "data: <path>"
    assert ("ml-100k" in data_line) == (dataset == "ml-100k")
    work = kernel_env / "work"
    assert (work / "model" / "model.json").is_file()
    out = (work / "transform" / "requests.jsonl.out").read_text().splitlines()
    assert len(out) == 5 * 5  # five requests, top_n 5
    plots = [
        o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(plots) == 1
    last = executed.cells[-1].outputs[-1]["data"]["text/plain"]  # recommendations + titles
    assert "title" in last
    assert ("released" if dataset == "ml-100k" else "genre") in last  # that dataset's metadata
