"""Sending mfrec's SageMaker requests with boto3, and waiting for the jobs they start."""

from __future__ import annotations

import time
from collections.abc import Mapping

from mfrec.train.errors import ConfigError


def make_client(region_name: str | None = None, **kwargs):
    """A boto3 SageMaker client (needs ``pip install 'mfrec[sagemaker]'``)."""
    try:
        import boto3
    except ImportError:
        raise ConfigError(
            "boto3 is not installed; install it with: pip install 'mfrec[sagemaker]'"
        ) from None
    return boto3.client("sagemaker", region_name=region_name, **kwargs)


def start_training_job(client, request: Mapping) -> str:
    """Send a :func:`training_job_request`; returns the job's ARN."""
    return client.create_training_job(**request)["TrainingJobArn"]


def create_model(client, request: Mapping) -> str:
    """Send a :func:`model_request`; returns the model's ARN."""
    return client.create_model(**request)["ModelArn"]


def start_transform_job(client, request: Mapping) -> str:
    """Send a :func:`transform_job_request`; returns the job's ARN."""
    return client.create_transform_job(**request)["TransformJobArn"]


def start_tuning_job(client, request: Mapping) -> str:
    """Send a :func:`tuning_job_request`; returns the tuning job's ARN."""
    return client.create_hyper_parameter_tuning_job(**request)["HyperParameterTuningJobArn"]


def create_endpoint(client, config_request: Mapping, request: Mapping) -> str:
    """Send an :func:`endpoint_config_request` then an :func:`endpoint_request`; returns its ARN."""
    client.create_endpoint_config(**config_request)
    return client.create_endpoint(**request)["EndpointArn"]


def wait_for_job(client, job_name: str, kind: str = "training", poll_s: float = 30) -> dict:
    """Poll until a ``training`` or ``transform`` job completes, fails or stops.

    Returns the last ``DescribeTrainingJob``/``DescribeTransformJob`` answer; its
    ``TrainingJobStatus``/``TransformJobStatus`` and ``FailureReason`` say how it ended.
    """
    if kind == "training":
        describe, key, status = client.describe_training_job, "TrainingJobName", "TrainingJobStatus"
    elif kind == "transform":
        describe, key = client.describe_transform_job, "TransformJobName"
        status = "TransformJobStatus"
    else:
        raise ConfigError(f"kind={kind!r} is not valid; use 'training' or 'transform'")
    while True:
        description = describe(**{key: job_name})
        if description[status] in ("Completed", "Failed", "Stopped"):
            return description
        time.sleep(poll_s)


def final_metrics(description: Mapping) -> dict[str, float]:
    """``{metric name: value}`` from a ``DescribeTrainingJob`` answer (last value of each)."""
    return {m["MetricName"]: m["Value"] for m in description.get("FinalMetricDataList", [])}
