"""The request bodies of SageMaker's API calls for mfrec: training job, model, batch transform,
endpoint (each a plain dict of the boto3 call's keyword arguments)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from mfrec.serve.strategies import STRATEGIES
from mfrec.train.errors import ConfigError
from mfrec.train.metric_lines import METRIC_DEFINITIONS

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# SageMaker's GPU inference hosts default to NVIDIA driver 470 (CUDA 11.4), too old for the
# image's CUDA 12.6; these AMIs carry driver 535 (CUDA 12.2, enough through minor-version
# compatibility). Names from the SageMaker API (TransformResources, ProductionVariant).
BATCH_GPU_AMI = "al2-ami-sagemaker-batch-gpu-535"
ENDPOINT_GPU_AMI = "al2-ami-sagemaker-inference-gpu-2"
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
# Printed once after training (the per-epoch value is not the best one after early stopping).
DEFAULT_OBJECTIVE = "final:validation:ndcg@10"

_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_GPU_INSTANCE = re.compile(r"^ml\.[gp]\d")


def metric_definitions() -> list[dict[str, str]]:
    """The ``MetricDefinitions`` (name + regex) matching the lines ``mfrec train`` prints."""
    return [dict(metric) for metric in METRIC_DEFINITIONS]


def unique_name(prefix: str = "mfrec", now: datetime | None = None) -> str:
    """``<prefix>-YYYY-MM-DD-HH-MM-SS-mmm`` (UTC), a valid job, model or tuning-job name."""
    now = now or datetime.now(timezone.utc)
    name = f"{prefix}-{now:%Y-%m-%d-%H-%M-%S}-{now.microsecond // 1000:03d}"
    return check_name(name, "name")


def hyperparameters_to_strings(hyperparameters: Mapping[str, object]) -> dict[str, str]:
    """SageMaker's hyperparameters are all strings: ``True`` → ``"true"``, ``0.01`` → ``"0.01"``,
    lists and dicts → JSON. ``None`` is refused (leave the key out to get the default)."""
    strings = {}
    for key, value in hyperparameters.items():
        if value is None:
            raise ConfigError(f"hyperparameter {key!r} is None; leave it out to use the default")
        if isinstance(value, bool):
            strings[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple, dict)):
            strings[key] = json.dumps(value)
        else:
            strings[key] = str(value)
    return strings


def is_gpu_instance(instance_type: str) -> bool:
    """True for the NVIDIA GPU families (``ml.g4dn``, ``ml.g5``, ``ml.p4d``, ...)."""
    return bool(_GPU_INSTANCE.match(instance_type))


def training_job_request(
    job_name: str,
    image_uri: str,
    role_arn: str,
    training_s3_uri: str,
    output_s3_uri: str,
    *,
    validation_s3_uri: str | None = None,
    hyperparameters: Mapping[str, object] | None = None,
    content_type: str = "text/csv",
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    volume_size_gb: int = 30,
    max_runtime_s: int = 24 * 3600,
    spot: bool = False,
    max_wait_s: int | None = None,
    checkpoint_s3_uri: str | None = None,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """The ``CreateTrainingJob`` request for the mfrec image (File input mode).

    ``instance_count`` > 1 trains one model on that many hosts together (docs/training.md,
    "Distributed training"; each host runs one process per GPU by default); only the first
    host writes the model.

    Channels ``training`` (required) and ``validation`` (optional) read every file under their S3
    prefix. With ``spot=True`` the job uses managed Spot capacity, waits at most ``max_wait_s``
    (default twice ``max_runtime_s``) and syncs ``/opt/ml/checkpoints`` to ``checkpoint_s3_uri``
    (default ``<output_s3_uri>/<job_name>/checkpoints``), so an interrupted job resumes.
    """
    check_name(job_name, "training job name")
    if (
        isinstance(instance_count, bool)
        or not isinstance(instance_count, int)
        or instance_count < 1
    ):
        raise ConfigError(f"instance_count={instance_count!r} must be an integer >= 1")
    channels = [_channel("training", training_s3_uri, content_type)]
    if validation_s3_uri:
        channels.append(_channel("validation", validation_s3_uri, content_type))
    stopping: dict = {"MaxRuntimeInSeconds": int(max_runtime_s)}
    if spot:
        max_wait_s = int(max_wait_s or 2 * max_runtime_s)
        if max_wait_s < max_runtime_s:
            raise ConfigError(
                f"max_wait_s={max_wait_s} is shorter than max_runtime_s={max_runtime_s}; Spot "
                "jobs need max_wait_s >= max_runtime_s (the wait includes the run)"
            )
        stopping["MaxWaitTimeInSeconds"] = max_wait_s
        default = f"{_s3(output_s3_uri).rstrip('/')}/{job_name}/checkpoints"
        checkpoint_s3_uri = checkpoint_s3_uri or default
    request = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(),
        },
        "RoleArn": role_arn,
        "HyperParameters": hyperparameters_to_strings(hyperparameters or {}),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": _s3(output_s3_uri)},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": int(volume_size_gb),
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": bool(spot),
    }
    if checkpoint_s3_uri:
        request["CheckpointConfig"] = {
            "S3Uri": _s3(checkpoint_s3_uri),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    return _with_extras(request, environment, tags)


def model_request(
    model_name: str,
    image_uri: str,
    role_arn: str,
    model_data_url: str,
    *,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """The ``CreateModel`` request: the mfrec image serving ``model.tar.gz`` from a training job."""
    container = {"Image": image_uri, "ModelDataUrl": _s3(model_data_url)}
    if environment:
        container["Environment"] = dict(environment)
    request = {
        "ModelName": check_name(model_name, "model name"),
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": container,
    }
    return _with_extras(request, None, tags)


def transform_job_request(
    job_name: str,
    model_name: str,
    input_s3_uri: str,
    output_s3_uri: str,
    *,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    batch_strategy: str = "SingleRecord",
    max_payload_mb: int = 6,
    max_concurrent_transforms: int | None = None,
    content_type: str = "application/json",
    accept: str = "text/csv",
    ami_version: str | None = "auto",
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """The ``CreateTransformJob`` request with the seed's settings.

    Input files are JSON lines such as ``{"user_id": "685", "top_n": "5"}`` split by line
    (``SplitType=Line``); each ``<file>.out`` holds ``user_id,item_id,score`` rows
    (``Accept=text/csv``, ``AssembleWith=Line``). ``batch_strategy="MultiRecord"`` sends up to
    ``max_payload_mb`` of lines per request (faster). ``ami_version="auto"`` picks
    :data:`BATCH_GPU_AMI` for GPU instance types (their default driver cannot run CUDA 12);
    ``None`` leaves SageMaker's default. Without ``max_concurrent_transforms`` SageMaker asks
    the container (``GET /execution-parameters``).
    """
    if batch_strategy not in STRATEGIES:
        raise ConfigError(
            f"batch_strategy={batch_strategy!r} is not valid; use 'SingleRecord' or 'MultiRecord'"
        )
    if not 0 <= max_payload_mb <= 100:
        raise ConfigError(f"max_payload_mb={max_payload_mb} is out of range; allowed: 0 to 100")
    resources = {"InstanceType": instance_type, "InstanceCount": int(instance_count)}
    if ami_version == "auto":
        ami_version = BATCH_GPU_AMI if is_gpu_instance(instance_type) else None
    if ami_version:
        resources["TransformAmiVersion"] = ami_version
    request = {
        "TransformJobName": check_name(job_name, "transform job name"),
        "ModelName": model_name,
        "BatchStrategy": batch_strategy,
        "MaxPayloadInMB": int(max_payload_mb),
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": _s3(input_s3_uri)}},
            "ContentType": content_type,
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": _s3(output_s3_uri),
            "Accept": accept,
            "AssembleWith": "Line",
        },
        "TransformResources": resources,
    }
    if max_concurrent_transforms is not None:
        request["MaxConcurrentTransforms"] = int(max_concurrent_transforms)
    return _with_extras(request, environment, tags)


def endpoint_config_request(
    config_name: str,
    model_name: str,
    *,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    ami_version: str | None = "auto",
) -> dict:
    """The ``CreateEndpointConfig`` request for a real-time endpoint (one variant, all traffic).

    ``ami_version="auto"`` picks :data:`ENDPOINT_GPU_AMI` for GPU instance types.
    """
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model_name,
        "InstanceType": instance_type,
        "InitialInstanceCount": int(instance_count),
        "InitialVariantWeight": 1.0,
    }
    if ami_version == "auto":
        ami_version = ENDPOINT_GPU_AMI if is_gpu_instance(instance_type) else None
    if ami_version:
        variant["InferenceAmiVersion"] = ami_version
    name = check_name(config_name, "endpoint config name")
    return {"EndpointConfigName": name, "ProductionVariants": [variant]}


def endpoint_request(endpoint_name: str, config_name: str) -> dict:
    """The ``CreateEndpoint`` request."""
    return {
        "EndpointName": check_name(endpoint_name, "endpoint name"),
        "EndpointConfigName": config_name,
    }


# --- helpers -------------------------------------------------------------------------------------


def check_name(name: str, what: str) -> str:
    if not _JOB_NAME.match(name):
        raise ConfigError(
            f"{what} {name!r} is not valid: use 1 to 63 letters, digits and hyphens, starting "
            "and ending with a letter or digit"
        )
    return name


def _s3(uri: str) -> str:
    # Kept as written: an input prefix without its trailing slash also matches longer keys
    # (s3://b/train matches s3://b/train-old/...), so a slash the user wrote must stay.
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ConfigError(f"{uri!r} is not an S3 URI; write it as s3://bucket/prefix")
    return uri


def _channel(name: str, s3_uri: str, content_type: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": _s3(s3_uri),
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": content_type,
    }


def _with_extras(request: dict, environment, tags) -> dict:
    if environment:
        request["Environment"] = {str(k): str(v) for k, v in environment.items()}
    if tags:
        request["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return request
