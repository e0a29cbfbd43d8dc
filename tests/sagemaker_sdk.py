"""Offline capture of the SageMaker Python SDK v3's API calls (not a test module).

A botocore event hook on the SDK's boto3 session raises :class:`Sent` with a ``Create*`` call's
parameters instead of sending it, so a test sees the exact request and nothing reaches AWS.
"""

from __future__ import annotations

import copy
import warnings

import pytest

with warnings.catch_warnings():  # 3.27 warns about its own moved modules when imported
    warnings.simplefilter("ignore")
    try:
        import sagemaker.train  # noqa: F401
        from sagemaker.core.helper.session_helper import Session
    except ImportError:
        Session = None

SDK_INSTALLED = Session is not None
SKIP_WITHOUT_SDK = pytest.mark.skipif(
    not SDK_INSTALLED, reason="the SageMaker SDK is not installed: pip install 'mfrec[sagemaker]'"
)


class Sent(Exception):
    """Raised by the hook instead of sending a request: its operation and parameters."""

    def __init__(self, operation: str, params: dict) -> None:
        super().__init__(operation)
        self.operation, self.params = operation, params


def offline_session(monkeypatch, tmp_path):
    """An SDK ``Session`` with fake credentials whose ``Create*`` calls raise :class:`Sent`
    (any other call before them fails the test)."""
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # else the SDK asks IAM
    boto_session = boto3.Session(region_name="eu-west-1")

    def stop(params, event_name, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        if operation.startswith("Create"):
            raise Sent(operation, copy.deepcopy(params))
        raise AssertionError(f"the SDK called {operation} before sending its request")

    boto_session.events.register("before-parameter-build.*.*", stop)
    return Session(boto_session=boto_session)


def sent(call) -> tuple[str, dict]:
    """The (operation, parameters) that ``call()`` tried to send."""
    with pytest.raises(Sent) as stopped:
        call()
    return stopped.value.operation, stopped.value.params


def as_the_sdk_writes_it(training_request: dict) -> dict:
    """``mfrec.sagemaker``'s ``CreateTrainingJob`` request with the differences of form that
    the SDK makes: it writes two of SageMaker's defaults (``InputMode: File`` on each channel,
    ``CompressionType: GZIP``) and leaves out ``EnableManagedSpotTraining: false``."""
    request = copy.deepcopy(training_request)
    for channel in request["InputDataConfig"]:
        channel["InputMode"] = "File"
    request["OutputDataConfig"]["CompressionType"] = "GZIP"
    if request.get("EnableManagedSpotTraining") is False:
        del request["EnableManagedSpotTraining"]
    return request
