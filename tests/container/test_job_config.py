"""SageMaker's job description read from a fake /opt/ml in tmp_path: config files and channels."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from mfrec.job_config import JobConfig, channel_data, read_job_config
from mfrec.paths import SageMakerPaths
from mfrec.train.errors import ConfigError


def layout(
    base: Path,
    hyperparameters: object = None,
    channels: object = None,
    resources: object = None,
) -> SageMakerPaths:
    """``input/config`` with the config files that are not None (objects written as JSON)."""
    paths = SageMakerPaths(base)
    paths.input_config.mkdir(parents=True)
    for path, value in (
        (paths.hyperparameters, hyperparameters),
        (paths.input_data_config, channels),
        (paths.resource_config, resources),
    ):
        if value is not None:
            path.write_text(value if isinstance(value, str) else json.dumps(value))
    return paths


# --- read_job_config --------------------------------------------------------------------------


def test_sagemakers_three_files_are_read(tmp_path):
    channels = {
        "training": {
            "TrainingInputMode": "FastFile",
            "ContentType": "text/csv",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        },
        "validation": {"TrainingInputMode": "File"},
    }
    resources = {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
        "network_interface_name": "eth0",
        "instance_groups": [],
    }
    paths = layout(tmp_path, {"num_epochs": "3", "loss": "bpr"}, channels, resources)
    job = read_job_config(paths)
    assert job == JobConfig(
        hyperparameters={"num_epochs": "3", "loss": "bpr"},
        channels=channels,
        current_host="algo-1",
        hosts=("algo-1",),
        network_interface="eth0",
    )
    assert (job.input_mode("training"), job.input_mode("validation")) == ("FastFile", "File")
    assert job.is_primary


def test_every_config_file_and_optional_key_may_be_missing(tmp_path, caplog):
    paths = layout(tmp_path, channels={"training": {}})
    with caplog.at_level(logging.INFO, logger="mfrec"):
        job = read_job_config(paths)
    assert job == JobConfig(hyperparameters={}, channels={"training": {}})
    assert job.input_mode("training") == "File" and job.input_mode("items") == "File"
    assert job.is_primary
    assert "resourceconfig.json not found; using {}" in caplog.text
    assert "hyperparameters.json not found" in caplog.text


def test_non_string_hyperparameters_become_their_json_text(tmp_path):
    hyperparameters = {"num_epochs": 3, "user_bias": True, "l2": 0.5, "x": None, "y": [1, 2]}
    job = read_job_config(layout(tmp_path, hyperparameters))
    assert job.hyperparameters == {
        "num_epochs": "3",
        "user_bias": "true",
        "l2": "0.5",
        "x": "null",
        "y": "[1, 2]",
    }


@pytest.mark.parametrize(
    ("current_host", "hosts", "primary"),
    [("algo-1", ["algo-1", "algo-2"], True), ("algo-2", ["algo-1", "algo-2"], False)],
)
def test_only_the_first_host_is_primary(tmp_path, current_host, hosts, primary):
    job = read_job_config(
        layout(tmp_path, resources={"current_host": current_host, "hosts": hosts})
    )
    assert job.is_primary is primary and job.hosts == tuple(hosts)


def test_a_folder_without_input_is_not_a_layout(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"is not a SageMaker training layout \(.*input is missing\)\. To train outside "
        r"SageMaker run `mfrec train --data PATH --model-dir DIR`.*SAGEMAKER_BASE_DIR",
    ):
        read_job_config(SageMakerPaths(tmp_path))


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("hyperparameters", "{num_epochs: 2", r"hyperparameters\.json is not valid JSON \("),
        ("channels", "", r"inputdataconfig\.json is not valid JSON \(.*write it as a JSON object"),
        ("resources", '["algo-1"]', r"resourceconfig\.json holds a list; it must be a JSON object"),
        ("hyperparameters", '"num_epochs=2"', r"hyperparameters\.json holds a str; it must be"),
        ("channels", '{"training": "File"}', r"channel 'training' is not a JSON object"),
    ],
)
def test_bad_json_says_which_file_and_what_is_wrong(tmp_path, field, text, message):
    with pytest.raises(ConfigError, match=message):
        read_job_config(layout(tmp_path, **{field: text}))


def test_a_file_that_is_not_utf8_is_bad_json(tmp_path):
    paths = layout(tmp_path)
    paths.hyperparameters.write_bytes(b'{"loss": "\xff"}')
    with pytest.raises(ConfigError, match=r"hyperparameters\.json is not valid JSON"):
        read_job_config(paths)


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (
            {"TrainingInputMode": "Stream"},
            r"channel 'training' has TrainingInputMode 'Stream'; mfrec reads File, FastFile, "
            r"Pipe: choose one of those",
        ),
        (
            {"RecordWrapperType": "RecordIO"},
            r"channel 'training' wraps records in RecordIO; .*set RecordWrapperType to None",
        ),
    ],
)
def test_unsupported_channel_settings_are_refused(tmp_path, channel, message):
    with pytest.raises(ConfigError, match=message):
        read_job_config(layout(tmp_path, channels={"training": channel}))


def test_a_sharded_training_channel_on_several_hosts_is_read_with_its_interface(tmp_path):
    # Each host reads its shard; the training job gathers them (test_distributed_job.py).
    paths = layout(
        tmp_path,
        channels={"training": {"S3DistributionType": "ShardedByS3Key"}},
        resources={
            "current_host": "algo-2",
            "hosts": ["algo-1", "algo-2"],
            "network_interface_name": "eth0",
        },
    )
    job = read_job_config(paths)
    assert job.hosts == ("algo-1", "algo-2") and job.network_interface == "eth0"


def test_a_sharded_channel_on_one_host_sees_all_the_data(tmp_path):
    channels = {"training": {"S3DistributionType": "ShardedByS3Key"}}
    job = read_job_config(layout(tmp_path, channels=channels, resources={"hosts": ["algo-1"]}))
    assert job.channels == channels


# --- channel_data -----------------------------------------------------------------------------


def test_file_mode_channel_is_its_folder(tmp_path):
    paths = layout(tmp_path, channels={"training": {"TrainingInputMode": "FastFile"}})
    paths.channel("training").mkdir(parents=True)
    job = read_job_config(paths)
    assert channel_data(paths, job, "training", tmp_path / "scratch") == paths.channel("training")
    assert not (tmp_path / "scratch").exists()


def test_a_channel_not_in_the_config_is_still_found_on_disk(tmp_path):
    paths = layout(tmp_path)
    paths.channel("items").mkdir(parents=True)
    job = read_job_config(paths)
    assert channel_data(paths, job, "items", tmp_path / "scratch") == paths.channel("items")


def test_a_missing_optional_channel_is_none(tmp_path):
    paths = layout(tmp_path, channels={"training": {}})
    job = read_job_config(paths)
    assert channel_data(paths, job, "validation", tmp_path / "scratch") is None


def test_pipe_mode_copies_the_channel_into_scratch(tmp_path, caplog):
    channels = {"training": {"TrainingInputMode": "Pipe", "ContentType": "text/csv"}}
    paths = layout(tmp_path, channels=channels)
    # A regular file stands in for SageMaker's FIFO: the copy reads both the same way.
    source = paths.channel("training_0")
    source.parent.mkdir(parents=True)
    source.write_text("user_id,item_id\nu1,i1\n")
    with caplog.at_level(logging.INFO, logger="mfrec"):
        copied = channel_data(paths, read_job_config(paths), "training", tmp_path / "scratch")
    assert copied == tmp_path / "scratch" / "training" / "training_0"
    assert copied.read_text() == "user_id,item_id\nu1,i1\n"
    assert "(ContentType text/csv)" in caplog.text and "read 22 bytes" in caplog.text


def test_a_configured_channel_that_is_missing_lists_the_channels_found(tmp_path):
    channels = {"training": {}, "validation": {}}
    paths = layout(tmp_path, channels=channels)
    (paths.channel("train")).mkdir(parents=True)  # a typo in the channel name
    os.mkfifo(paths.channel("items_0"))
    job = read_job_config(paths)
    with pytest.raises(
        ConfigError,
        match=r"the 'validation' channel \(File mode\) was expected at .*input/data/validation "
        r"but is missing \(channels found: items, train, training, validation\); pass your "
        r"interactions as a channel named 'validation', e\.g\. "
        r"estimator\.fit\(\{'validation': 's3://bucket/prefix/'\}\)",
    ):
        channel_data(paths, job, "validation", tmp_path / "scratch")


def test_a_required_channel_missing_from_the_config_and_the_disk(tmp_path):
    paths = layout(tmp_path)
    with pytest.raises(ConfigError, match=r"'training' channel .*\(channels found: none\)"):
        channel_data(paths, read_job_config(paths), "training", tmp_path / "s", required=True)


def test_pipe_mode_without_the_fifo_names_the_fifo(tmp_path):
    paths = layout(tmp_path, channels={"training": {"TrainingInputMode": "Pipe"}})
    with pytest.raises(
        ConfigError, match=r"'training' channel \(Pipe mode\) was expected at .*/training_0 "
    ):
        channel_data(paths, read_job_config(paths), "training", tmp_path / "scratch")
