"""mfrec.sagemaker: the exact boto3 requests, and their submission through botocore's Stubber.

No test reaches AWS: the client has fake credentials and a Stubber that answers every call and
checks its parameters against both our expected dict and botocore's model of the SageMaker API.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from botocore.stub import Stubber

from mfrec import sagemaker as sm
from mfrec.train.errors import ConfigError

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mfrec:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
METRICS = [
    {"Name": "train:loss", "Regex": r"train_loss=([0-9.eE+-]+);"},
    {"Name": "final:validation:ndcg@10", "Regex": r"final: .*val_ndcg@10=([0-9.eE+-]+);"},
]


@pytest.fixture(autouse=True)
def fixed_metrics(monkeypatch):
    # The request builders take the regexes from training; these tests pin a known list.
    monkeypatch.setattr(sm.requests, "metric_definitions", lambda: [dict(m) for m in METRICS])


@pytest.fixture
def client(monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = sm.make_client()
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def test_requests_carry_trainings_metric_definitions(monkeypatch):
    from mfrec.train.metric_lines import METRIC_DEFINITIONS

    monkeypatch.undo()  # the real definitions, not the fixed list

    request = sm.training_job_request("j", IMAGE, ROLE, "s3://b/t", "s3://b/o")
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == list(METRIC_DEFINITIONS)
    assert len(METRIC_DEFINITIONS) <= 40  # SageMaker's limit per training job
    training_line = "epoch=3; train_loss=4.5; val_ndcg@10=0.0712; epoch_seconds=1.2;"
    final_line = "final: val_ndcg@10=0.25; pop_ndcg@10=0.0639; best_epoch=12;"
    values = {}
    for metric in METRIC_DEFINITIONS:
        for line in (training_line, final_line):
            match = re.search(metric["Regex"], line)
            if match:
                values[metric["Name"]] = float(match.group(1))
    assert values["validation:ndcg@10"] == 0.0712
    assert values[sm.DEFAULT_OBJECTIVE] == 0.25
    tuning = sm.tuning_job_request("t", request, {"k": sm.IntegerRange(1, 2)})
    objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "final:validation:ndcg@10"}


def test_training_request_defaults():
    request = sm.training_job_request(
        "mfrec-1", IMAGE, ROLE, "s3://bucket/data/train/", "s3://bucket/output"
    )
    assert request == {
        "TrainingJobName": "mfrec-1",
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "HyperParameters": {},
        "InputDataConfig": [
            {
                "ChannelName": "training",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://bucket/data/train/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "EnableManagedSpotTraining": False,
    }


def test_training_request_spot_validation_and_strings():
    request = sm.training_job_request(
        "mfrec-2",
        IMAGE,
        ROLE,
        "s3://bucket/train/",
        "s3://bucket/output/",
        validation_s3_uri="s3://bucket/validation/",
        content_type="application/csv",
        hyperparameters={
            "embedding_dim": 64,
            "learning_rate": 0.005,
            "user_bias": True,
            "refit": False,
            "loss": "bpr",
            "extra_list": [1, "a"],
        },
        instance_type="ml.g5.xlarge",
        max_runtime_s=3600,
        spot=True,
        environment={"MFREC_LOG": 1},
        tags={"team": "recs"},
    )
    assert request["HyperParameters"] == {
        "embedding_dim": "64",
        "learning_rate": "0.005",
        "user_bias": "true",
        "refit": "false",
        "loss": "bpr",
        "extra_list": '[1, "a"]',
    }
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["training", "validation"]
    assert request["InputDataConfig"][1]["ContentType"] == "application/csv"
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://bucket/output/mfrec-2/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["Environment"] == {"MFREC_LOG": "1"}
    assert request["Tags"] == [{"Key": "team", "Value": "recs"}]


def test_training_request_explicit_checkpoints_without_spot():
    request = sm.training_job_request(
        "j", IMAGE, ROLE, "s3://b/t", "s3://b/o", checkpoint_s3_uri="s3://b/ckpt"
    )
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://b/ckpt",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"job_name": "bad_name"}, r"training job name 'bad_name' is not valid: use 1 to 63"),
        ({"job_name": "x" * 64}, r"is not valid"),
        ({"training_s3_uri": "/local/data"}, r"'/local/data' is not an S3 URI; write it as s3://"),
        ({"output_s3_uri": "s3://"}, r"is not an S3 URI"),
        ({"spot": True, "max_wait_s": 60}, r"max_wait_s=60 is shorter than max_runtime_s=86400"),
        ({"hyperparameters": {"k": None}}, r"hyperparameter 'k' is None; leave it out"),
    ],
)
def test_training_request_errors(kwargs, match):
    args = {
        "job_name": "ok",
        "image_uri": IMAGE,
        "role_arn": ROLE,
        "training_s3_uri": "s3://b/t",
        "output_s3_uri": "s3://b/o",
    }
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        sm.training_job_request(**args)


def test_model_request():
    request = sm.model_request(
        "mfrec-model",
        IMAGE,
        ROLE,
        "s3://b/o/mfrec-1/output/model.tar.gz",
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    )
    assert request == {
        "ModelName": "mfrec-model",
        "ExecutionRoleArn": ROLE,
        "PrimaryContainer": {
            "Image": IMAGE,
            "ModelDataUrl": "s3://b/o/mfrec-1/output/model.tar.gz",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
        },
    }


def test_transform_request_has_the_seed_settings():
    request = sm.transform_job_request("mfrec-t", "mfrec-model", "s3://b/in/", "s3://b/out/")
    assert request == {
        "TransformJobName": "mfrec-t",
        "ModelName": "mfrec-model",
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 6,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
            "ContentType": "application/json",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": "s3://b/out/",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }


def test_transform_request_gpu_picks_the_535_driver_ami():
    request = sm.transform_job_request(
        "t",
        "m",
        "s3://b/in/",
        "s3://b/out/",
        instance_type="ml.g4dn.xlarge",
        batch_strategy="MultiRecord",
        max_payload_mb=20,
        max_concurrent_transforms=4,
    )
    assert request["TransformResources"] == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 1,
        "TransformAmiVersion": "al2-ami-sagemaker-batch-gpu-535",
    }
    assert request["BatchStrategy"] == "MultiRecord"
    assert request["MaxPayloadInMB"] == 20
    assert request["MaxConcurrentTransforms"] == 4
    no_ami = sm.transform_job_request(
        "t", "m", "s3://b/i", "s3://b/o", instance_type="ml.p3.2xlarge", ami_version=None
    )
    assert "TransformAmiVersion" not in no_ami["TransformResources"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_strategy": "single"}, r"batch_strategy='single' is not valid; use 'SingleRecord'"),
        ({"max_payload_mb": 101}, r"max_payload_mb=101 is out of range; allowed: 0 to 100"),
        ({"job_name": "-t"}, r"transform job name '-t' is not valid"),
    ],
)
def test_transform_request_errors(kwargs, match):
    args = {
        "job_name": "t",
        "model_name": "m",
        "input_s3_uri": "s3://b/i",
        "output_s3_uri": "s3://b/o",
    }
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        sm.transform_job_request(**args)


def test_endpoint_requests():
    config = sm.endpoint_config_request("mfrec-cfg", "mfrec-model", instance_type="ml.g5.xlarge")
    assert config == {
        "EndpointConfigName": "mfrec-cfg",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "mfrec-model",
                "InstanceType": "ml.g5.xlarge",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
                "InferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-2",
            }
        ],
    }
    cpu = sm.endpoint_config_request("c", "m")
    assert "InferenceAmiVersion" not in cpu["ProductionVariants"][0]
    assert sm.endpoint_request("mfrec-ep", "mfrec-cfg") == {
        "EndpointName": "mfrec-ep",
        "EndpointConfigName": "mfrec-cfg",
    }


def _tuning_request(**kwargs):
    training = sm.training_job_request(
        "ignored",
        IMAGE,
        ROLE,
        "s3://b/train/",
        "s3://b/out",
        validation_s3_uri="s3://b/val/",
        hyperparameters={"num_epochs": 30, "embedding_dim": 64},
        spot=True,
        tags={"team": "recs"},
    )
    ranges = {
        "embedding_dim": sm.IntegerRange(16, 256, "Logarithmic"),
        "learning_rate": sm.ContinuousRange(0.001, 0.1),
        "loss": sm.CategoricalRange(("softmax", "bpr")),
    }
    return training, sm.tuning_job_request("mfrec-tune", training, ranges, **kwargs)


def test_tuning_request():
    training, request = _tuning_request(max_jobs=12, max_parallel_jobs=3)
    definition = {
        k: v for k, v in training.items() if k not in ("TrainingJobName", "HyperParameters", "Tags")
    }
    definition["StaticHyperParameters"] = {"num_epochs": "30"}
    assert request == {
        "HyperParameterTuningJobName": "mfrec-tune",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize",
                "MetricName": "final:validation:ndcg@10",
            },
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 3},
            "ParameterRanges": {
                "IntegerParameterRanges": [
                    {
                        "Name": "embedding_dim",
                        "MinValue": "16",
                        "MaxValue": "256",
                        "ScalingType": "Logarithmic",
                    }
                ],
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": "0.001",
                        "MaxValue": "0.1",
                        "ScalingType": "Auto",
                    }
                ],
                "CategoricalParameterRanges": [{"Name": "loss", "Values": ["softmax", "bpr"]}],
            },
        },
        "TrainingJobDefinition": definition,
        "Tags": [{"Key": "team", "Value": "recs"}],
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"objective_metric": "ndcg"},
            r"objective_metric='ndcg' is not a metric mfrec reports; use one of: train:loss, "
            r"final:validation:ndcg@10",
        ),
        ({"job_name": "x" * 33}, r"longer than 32 characters"),
        ({"ranges": {"k": (1, 2)}}, r"range for 'k' must be an IntegerRange"),
        ({"ranges": {"k": sm.IntegerRange(5, 1)}}, r"range for 'k' has min_value > max_value"),
    ],
)
def test_tuning_request_errors(change, match):
    training, _ = _tuning_request()
    args = {"job_name": "t", "training_request": training, "ranges": {}}
    args.update(change)
    with pytest.raises(ConfigError, match=match):
        sm.tuning_job_request(**args)


def test_unique_name():
    now = datetime(2026, 11, 23, 13, 45, 1, 123456, tzinfo=timezone.utc)
    assert sm.unique_name("mfrec", now) == "mfrec-2026-11-23-13-45-01-123"
    assert sm.unique_name()[: len("mfrec-20")] == "mfrec-20"
    with pytest.raises(ConfigError, match="name 'a_b-2026"):
        sm.unique_name("a_b", now)


def test_submission_sends_exactly_the_requests(client):
    stub = client.stubber
    training = sm.training_job_request("mfrec-1", IMAGE, ROLE, "s3://b/t/", "s3://b/o", spot=True)
    model = sm.model_request("mfrec-m", IMAGE, ROLE, "s3://b/o/mfrec-1/output/model.tar.gz")
    transform = sm.transform_job_request(
        "mfrec-t", "mfrec-m", "s3://b/in/", "s3://b/out/", instance_type="ml.g5.xlarge"
    )
    _, tuning = _tuning_request()
    config = sm.endpoint_config_request("mfrec-c", "mfrec-m", instance_type="ml.g5.xlarge")
    endpoint = sm.endpoint_request("mfrec-e", "mfrec-c")
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:{}"
    stub.add_response(
        "create_training_job", {"TrainingJobArn": arn.format("training-job/mfrec-1")}, training
    )
    stub.add_response("create_model", {"ModelArn": arn.format("model/mfrec-m")}, model)
    stub.add_response(
        "create_transform_job", {"TransformJobArn": arn.format("transform-job/mfrec-t")}, transform
    )
    stub.add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": arn.format("hyper-parameter-tuning-job/mfrec-tune")},
        tuning,
    )
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": arn.format("endpoint-config/mfrec-c")},
        config,
    )
    stub.add_response("create_endpoint", {"EndpointArn": arn.format("endpoint/mfrec-e")}, endpoint)

    assert sm.start_training_job(client, training) == arn.format("training-job/mfrec-1")
    assert sm.create_model(client, model) == arn.format("model/mfrec-m")
    assert sm.start_transform_job(client, transform) == arn.format("transform-job/mfrec-t")
    assert sm.start_tuning_job(client, tuning).endswith("hyper-parameter-tuning-job/mfrec-tune")
    assert sm.create_endpoint(client, config, endpoint) == arn.format("endpoint/mfrec-e")


def test_wait_for_job_polls_until_done(client):
    base = {
        "TrainingJobName": "mfrec-1",
        "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/mfrec-1",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/o/mfrec-1/output/model.tar.gz"},
        "SecondaryStatus": "Training",
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": datetime(2026, 1, 1, tzinfo=timezone.utc),
    }
    final = {"MetricName": "validation:ndcg@10", "Value": 0.25, "Timestamp": datetime(2026, 1, 1)}
    for status, extra in (("InProgress", {}), ("Completed", {"FinalMetricDataList": [final]})):
        client.stubber.add_response(
            "describe_training_job",
            {**base, "TrainingJobStatus": status, **extra},
            {"TrainingJobName": "mfrec-1"},
        )
    description = sm.wait_for_job(client, "mfrec-1", poll_s=0)
    assert description["TrainingJobStatus"] == "Completed"
    assert sm.final_metrics(description) == {"validation:ndcg@10": 0.25}
    with pytest.raises(ConfigError, match="kind='tuning' is not valid"):
        sm.wait_for_job(client, "mfrec-1", kind="tuning")


def test_make_client_without_boto3(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(
        ConfigError, match=r"boto3 is not installed; .*pip install 'mfrec\[sagemaker\]'"
    ):
        sm.make_client()


def test_importing_the_module_does_not_import_boto3():
    code = "import sys, mfrec.sagemaker; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
