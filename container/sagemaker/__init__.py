"""Launch mfrec on SageMaker from Python: the exact boto3 requests, and functions that send them.

Each ``*_request`` function returns the keyword arguments of one SageMaker API call, e.g.
``client.create_training_job(**training_job_request(...))``: plain dicts to read, log, diff or
hand to another tool. The ``start_*``/``create_*`` functions send them through a boto3
SageMaker client that the caller passes in (:func:`make_client` builds one). boto3 is imported
only there (``pip install 'mfrec[sagemaker]'``), so the container itself never needs it.

The requests use the boto3 API directly: for a bring-your-own-container algorithm the SageMaker
Python SDK (v2 ``Estimator``/``Transformer``, v3 ``ModelTrainer``/``Transformer``) adds no
setting that these requests lack. The SDK v3 code of docs/container.md sends these same requests
(tests/container/test_sagemaker_sdk.py checks it offline).

Modules: :mod:`.requests` (training, model, transform and endpoint requests),
:mod:`.tuning` (hyperparameter tuning), :mod:`.client` (sending and waiting).
"""

from mfrec.sagemaker.client import (
    create_endpoint,
    create_model,
    final_metrics,
    make_client,
    start_training_job,
    start_transform_job,
    start_tuning_job,
    wait_for_job,
)
from mfrec.sagemaker.requests import (
    BATCH_GPU_AMI,
    CHECKPOINT_LOCAL_PATH,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_OBJECTIVE,
    ENDPOINT_GPU_AMI,
    endpoint_config_request,
    endpoint_request,
    hyperparameters_to_strings,
    is_gpu_instance,
    metric_definitions,
    model_request,
    training_job_request,
    transform_job_request,
    unique_name,
)
from mfrec.sagemaker.tuning import (
    CategoricalRange,
    ContinuousRange,
    IntegerRange,
    tuning_job_request,
)

__all__ = [
    "BATCH_GPU_AMI",
    "CHECKPOINT_LOCAL_PATH",
    "DEFAULT_INSTANCE_TYPE",
    "DEFAULT_OBJECTIVE",
    "ENDPOINT_GPU_AMI",
    "CategoricalRange",
    "ContinuousRange",
    "IntegerRange",
    "create_endpoint",
    "create_model",
    "endpoint_config_request",
    "endpoint_request",
    "final_metrics",
    "hyperparameters_to_strings",
    "is_gpu_instance",
    "make_client",
    "metric_definitions",
    "model_request",
    "start_training_job",
    "start_transform_job",
    "start_tuning_job",
    "training_job_request",
    "transform_job_request",
    "tuning_job_request",
    "unique_name",
    "wait_for_job",
]
