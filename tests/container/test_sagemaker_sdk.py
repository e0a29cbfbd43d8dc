"""The SageMaker Python SDK v3 path: ``ModelTrainer``, ``sagemaker.core.transformer.Transformer``
and ``sagemaker.core.resources`` send exactly ``mfrec.sagemaker``'s requests for the same
settings (docs/container.md shows this code).

Offline: a botocore event hook on the SDK's boto3 session records each ``Create*`` call's
parameters and stops it there (:mod:`sagemaker_sdk`), so nothing reaches AWS. Skipped when the
SDK is not installed (``pip install 'mfrec[sagemaker]'``; the dev extra leaves it out: about
1 GB with MLflow).
"""

from __future__ import annotations

import warnings

import pytest
from sagemaker_sdk import (
    SDK_INSTALLED,
    SKIP_WITHOUT_SDK,
    as_the_sdk_writes_it,
    offline_session,
    sent,
)

from mfrec import sagemaker as sm

pytestmark = [SKIP_WITHOUT_SDK, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
if SDK_INSTALLED:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sagemaker.core.resources import Endpoint, EndpointConfig, Model
        from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            MetricDefinition,
            OutputDataConfig,
            StoppingCondition,
        )
        from sagemaker.core.transformer import Transformer
        from sagemaker.train import ModelTrainer

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mfrec:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TRAINING = "s3://my-bucket/mfrec/training/"
OUTPUT = "s3://my-bucket/mfrec/output"
CHECKPOINTS = "s3://my-bucket/mfrec/checkpoints"
HYPERPARAMETERS = {"num_epochs": 20, "learning_rate": 0.01, "refit": True}


@pytest.fixture
def session(monkeypatch, tmp_path):
    return offline_session(monkeypatch, tmp_path)


@pytest.mark.parametrize("spot", [True, False])
def test_model_trainer_sends_mfrecs_training_request(session, spot):
    compute = Compute(instance_type="ml.g5.xlarge", instance_count=1, volume_size_in_gb=30)
    stopping = StoppingCondition(max_runtime_in_seconds=3600)
    checkpoints = None
    if spot:
        compute.enable_managed_spot_training = True
        stopping.max_wait_time_in_seconds = 7200
        checkpoints = CheckpointConfig(s3_uri=CHECKPOINTS)  # LocalPath /opt/ml/checkpoints
    trainer = ModelTrainer(
        training_image=IMAGE,
        role=ROLE,
        base_job_name="mfrec",
        sagemaker_session=session,
        compute=compute,
        stopping_condition=stopping,
        output_data_config=OutputDataConfig(s3_output_path=OUTPUT),
        checkpoint_config=checkpoints,
        hyperparameters=HYPERPARAMETERS,
    ).with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in sm.metric_definitions()]
    )
    channel = InputData(channel_name="training", data_source=TRAINING, content_type="text/csv")
    operation, request = sent(lambda: trainer.train([channel], wait=False, logs=False))

    assert operation == "CreateTrainingJob" and request["TrainingJobName"].startswith("mfrec-")
    expected = sm.training_job_request(
        request["TrainingJobName"],
        IMAGE,
        ROLE,
        TRAINING,
        OUTPUT,
        hyperparameters=HYPERPARAMETERS,
        instance_type="ml.g5.xlarge",
        max_runtime_s=3600,
        spot=spot,
        max_wait_s=7200 if spot else None,
        checkpoint_s3_uri=CHECKPOINTS if spot else None,
    )
    assert request == as_the_sdk_writes_it(expected)


@pytest.mark.parametrize("instance_type", ["ml.m5.xlarge", "ml.g5.xlarge"])
def test_transformer_sends_mfrecs_transform_request(session, instance_type):
    expected = sm.transform_job_request(
        "mfrec-batch", "mfrec-model", "s3://b/requests/", "s3://b/out/", instance_type=instance_type
    )
    transformer = Transformer(
        model_name="mfrec-model",
        instance_count=1,
        instance_type=instance_type,
        strategy="SingleRecord",
        assemble_with="Line",
        output_path="s3://b/out/",
        accept="text/csv",
        max_payload=6,
        transform_ami_version=sm.BATCH_GPU_AMI if sm.is_gpu_instance(instance_type) else None,
        sagemaker_session=session,
    )
    operation, request = sent(
        lambda: transformer.transform(
            "s3://b/requests/",
            content_type="application/json",
            split_type="Line",
            job_name="mfrec-batch",
            wait=False,
            logs=False,
        )
    )
    assert (operation, request) == ("CreateTransformJob", expected)


def test_core_resources_send_mfrecs_model_and_endpoint_requests(session):
    model_data = "s3://b/output/mfrec-1/output/model.tar.gz"
    calls = {
        "CreateModel": lambda: Model.create(
            model_name="mfrec-1",
            primary_container=ContainerDefinition(image=IMAGE, model_data_url=model_data),
            execution_role_arn=ROLE,
            session=session.boto_session,
        ),
        "CreateEndpointConfig": lambda: EndpointConfig.create(
            endpoint_config_name="mfrec-ep",
            production_variants=[
                ProductionVariant(
                    variant_name="AllTraffic",
                    model_name="mfrec-1",
                    instance_type="ml.g5.xlarge",
                    initial_instance_count=1,
                    initial_variant_weight=1.0,
                    inference_ami_version=sm.ENDPOINT_GPU_AMI,
                )
            ],
            session=session.boto_session,
        ),
        "CreateEndpoint": lambda: Endpoint.create(
            endpoint_name="mfrec-ep", endpoint_config_name="mfrec-ep", session=session.boto_session
        ),
    }
    expected = {
        "CreateModel": sm.model_request("mfrec-1", IMAGE, ROLE, model_data),
        "CreateEndpointConfig": sm.endpoint_config_request(
            "mfrec-ep", "mfrec-1", instance_type="ml.g5.xlarge"
        ),
        "CreateEndpoint": sm.endpoint_request("mfrec-ep", "mfrec-ep"),
    }
    assert {name: sent(call) for name, call in calls.items()} == {
        name: (name, request) for name, request in expected.items()
    }
