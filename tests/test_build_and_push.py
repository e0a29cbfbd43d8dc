"""build_and_push.sh with `aws` and `docker` replaced by stubs on PATH that record their calls.

The PATH holds only the stubs and the few tools the script needs (bash, basename, dirname, cat),
so the machine's real AWS CLI and Docker are never reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "build_and_push.sh"
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"

AWS_STUB = r"""#!/usr/bin/env bash
echo "aws $*" >>"$STUB_LOG"
fail() { echo "$1" >&2; exit "$2"; }
not_found="An error occurred (RepositoryNotFoundException): The repository does not exist"
denied="An error occurred (AccessDeniedException): not authorized"
case "$1 $2" in
  "sts get-caller-identity")
    [ "${STUB_AWS_CREDS:-}" != none ] || fail "Unable to locate credentials." 255
    echo "123456789012" ;;
  "configure get")
    [ -n "${STUB_AWS_CONFIG_REGION:-}" ] || exit 1
    echo "$STUB_AWS_CONFIG_REGION" ;;
  "ecr describe-repositories")
    case "${STUB_ECR_REPO:-exists}" in
      missing) fail "$not_found" 254 ;;
      denied) fail "$denied" 254 ;;
    esac
    echo "{}" ;;
  "ecr create-repository") echo "{}" ;;
  "ecr get-login-password") echo "stub-password" ;;
  *) fail "aws stub: unexpected call: $*" 99 ;;
esac
"""

DOCKER_STUB = r"""#!/usr/bin/env bash
fail() { echo "$1" >&2; exit "$2"; }
case "$1" in
  info)
    echo "docker $*" >>"$STUB_LOG"
    [ "${STUB_DOCKER_INFO:-ok}" = ok ] || fail "Cannot connect to the Docker daemon" 1 ;;
  login)
    password="$(cat)"
    echo "docker $* <<< $password" >>"$STUB_LOG"
    [ "${STUB_DOCKER_LOGIN:-ok}" = ok ] || fail "denied: authorization token has expired" 1 ;;
  build)
    echo "docker $*" >>"$STUB_LOG"
    [ "${STUB_DOCKER_BUILD:-ok}" = ok ] || fail "ERROR: failed to solve" 17 ;;
  tag|push) echo "docker $*" >>"$STUB_LOG" ;;
  *) fail "docker stub: unexpected call: $*" 99 ;;
esac
"""


@pytest.fixture
def run(tmp_path):
    """Run the script with stubs; returns (CompletedProcess, list of recorded calls)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("bash", "basename", "dirname", "cat"):
        (stubs / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "calls.log"

    def _run(*args, aws=True, docker=True, **env):
        for name, text, wanted in (("aws", AWS_STUB, aws), ("docker", DOCKER_STUB, docker)):
            path = stubs / name
            path.unlink(missing_ok=True)
            if wanted:
                path.write_text(text)
                path.chmod(0o755)
        log.write_text("")
        environ = {"PATH": str(stubs), "HOME": str(tmp_path), "STUB_LOG": str(log), **env}
        proc = subprocess.run(
            ["/usr/bin/env", "bash", str(SCRIPT), *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc, log.read_text().splitlines()

    return _run


def test_help_prints_usage_and_calls_nothing(run):
    proc, calls = run("-h")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: build_and_push.sh [-h] [IMAGE_NAME [TAG]]")
    assert "default: mfrec" in proc.stdout
    assert calls == []


def test_push_to_existing_repository(run):
    proc, calls = run(AWS_REGION="eu-west-1")
    assert proc.returncode == 0, proc.stderr
    uri = f"{REGISTRY}/mfrec:latest"
    assert calls == [
        "docker info",
        "aws sts get-caller-identity --query Account --output text",
        "docker build --platform linux/amd64 -t mfrec:latest .",
        "aws ecr describe-repositories --repository-names mfrec --region eu-west-1",
        "aws ecr get-login-password --region eu-west-1",
        f"docker login --username AWS --password-stdin {REGISTRY} <<< stub-password",
        f"docker tag mfrec:latest {uri}",
        f"docker push {uri}",
    ]
    assert proc.stdout == uri + "\n"  # stdout is only the URI


def test_creates_missing_repository_with_name_and_tag(run):
    proc, calls = run(
        "my-team/recs", "v1.2", STUB_ECR_REPO="missing", STUB_AWS_CONFIG_REGION="eu-west-1"
    )
    assert proc.returncode == 0, proc.stderr
    uri = f"{REGISTRY}/my-team/recs:v1.2"
    assert calls[1:] == [
        "aws sts get-caller-identity --query Account --output text",
        "aws configure get region",
        "docker build --platform linux/amd64 -t my-team/recs:v1.2 .",
        "aws ecr describe-repositories --repository-names my-team/recs --region eu-west-1",
        "aws ecr create-repository --repository-name my-team/recs --region eu-west-1",
        "aws ecr get-login-password --region eu-west-1",
        f"docker login --username AWS --password-stdin {REGISTRY} <<< stub-password",
        f"docker tag my-team/recs:v1.2 {uri}",
        f"docker push {uri}",
    ]
    assert proc.stdout == uri + "\n"
    assert "creating ECR repository my-team/recs in eu-west-1" in proc.stderr


def test_region_precedence(run):
    # AWS_REGION wins over AWS_DEFAULT_REGION, which wins over the CLI configuration.
    proc, _ = run(AWS_REGION="us-east-2", AWS_DEFAULT_REGION="us-west-2")
    assert proc.stdout.endswith(".us-east-2.amazonaws.com/mfrec:latest\n")
    proc, calls = run(AWS_DEFAULT_REGION="us-west-2", STUB_AWS_CONFIG_REGION="eu-west-1")
    assert proc.stdout.endswith(".us-west-2.amazonaws.com/mfrec:latest\n")
    assert "aws configure get region" not in calls


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aws": False}, r"the AWS CLI \('aws'\) is not installed or not on PATH; install"),
        ({"docker": False}, r"Docker \('docker'\) is not installed or not on PATH"),
        ({"STUB_DOCKER_INFO": "fail"}, r"cannot reach the Docker engine .*; start Docker"),
        (
            {"STUB_AWS_CREDS": "none"},
            r"no usable AWS credentials .*Unable to locate credentials.*; run 'aws configure'",
        ),
        ({}, r"no AWS region configured; set AWS_REGION"),
    ],
    ids=["aws-missing", "docker-missing", "docker-not-running", "no-credentials", "no-region"],
)
def test_setup_errors_stop_before_building(run, kwargs, message):
    proc, calls = run(**kwargs)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("build_and_push.sh: error: ")
    assert re.search(message, proc.stderr), proc.stderr
    assert not any(call.startswith("docker build") for call in calls)


def test_docker_login_failure(run):
    proc, calls = run(AWS_REGION="eu-west-1", STUB_DOCKER_LOGIN="fail")
    assert proc.returncode == 1
    assert f"docker login to {REGISTRY} failed" in proc.stderr
    assert not any(call.startswith("docker push") for call in calls)


def test_repository_lookup_denied(run):
    proc, calls = run(AWS_REGION="eu-west-1", STUB_ECR_REPO="denied")
    assert proc.returncode == 1
    assert "cannot look up ECR repository 'mfrec' in eu-west-1: " in proc.stderr
    assert "AccessDeniedException" in proc.stderr
    assert not any("create-repository" in call for call in calls)


def test_build_failure_pushes_nothing(run):
    proc, calls = run(AWS_REGION="eu-west-1", STUB_DOCKER_BUILD="fail")
    assert proc.returncode == 17
    assert calls[-1] == "docker build --platform linux/amd64 -t mfrec:latest ."
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push"], "unknown option '--push'"),
        (["a", "b", "c"], "too many arguments"),
        (["MfRec"], "'MfRec' is not a valid ECR repository name"),
        (["mfrec", "bad tag"], "'bad tag' is not a valid image tag"),
    ],
)
def test_bad_arguments(run, args, message):
    proc, calls = run(*args, AWS_REGION="eu-west-1")
    assert proc.returncode == 1
    assert message in proc.stderr
    assert calls == []


def test_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)
