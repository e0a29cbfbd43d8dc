"""ServingSettings: the deployment options read from environment variables, and their errors."""

from __future__ import annotations

import pytest

from mfrec.serve.settings import ServingSettings
from mfrec.train.errors import ConfigError


def test_settings_from_environment_variables():
    settings = ServingSettings.from_env(
        {
            "MFREC_EXCLUDE_SEEN": "False",
            "MFREC_DEFAULT_TOP_N": "5",
            "MFREC_MAX_TOP_N": "50",
            "MFREC_UNKNOWN_USER": "ERROR",
            "MFREC_DEVICE": "cpu",
            "MFREC_FOLD_IN": "Mean",
            "SAGEMAKER_BATCH": "True",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0",
            "SAGEMAKER_BATCH_STRATEGY": "SingleRecord",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
            "MODEL_SERVER_WORKERS": "3",
            "MODEL_SERVER_TIMEOUT": "120",
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "MFREC_MAX_RESPONSE_MB": "7",
        }
    )
    assert settings == ServingSettings(
        False, 5, 50, "error", "cpu", "mean", True, 100, 100, "SINGLE_RECORD", 4, 3, 120, 9090, 7
    )
    assert ServingSettings.from_env({}).max_response_mb == 100
    default = ServingSettings.from_env({})
    assert (default.max_payload_mb, default.batch_payload_mb) == (6, 1)
    assert ServingSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"}).batch_payload_mb == 20
    assert settings.recommender_options()["fold_in_method"] == "mean"
    both = ServingSettings.from_env(
        {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "MODEL_SERVER_WORKERS": "7",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
        }
    )
    assert (both.workers, both.timeout, both.batch, both.exclude_seen) == (2, 30, False, True)
    assert (default.header_timeout, default.body_timeout) == (10, 10)
    assert ServingSettings.from_env({"MFREC_HEADER_TIMEOUT": "3"}).header_timeout == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MFREC_UNKNOWN_USER": "guess"}, "MFREC_UNKNOWN_USER='guess'; use one of popular, error"),
        ({"MFREC_EXCLUDE_SEEN": "perhaps"}, "MFREC_EXCLUDE_SEEN='perhaps' must be true or false"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "101"}, "must be an integer from 0 to 100"),
        ({"MODEL_SERVER_WORKERS": "many"}, "SAGEMAKER_MODEL_SERVER_WORKERS='many' must be an"),
        ({"SAGEMAKER_BATCH_STRATEGY": "ALL"}, "use MULTI_RECORD or SINGLE_RECORD"),
        ({"MFREC_DEFAULT_TOP_N": "0"}, "MFREC_DEFAULT_TOP_N='0' must be an integer from 1"),
        ({"MFREC_FOLD_IN": "median"}, "MFREC_FOLD_IN='median'; use one of als, mean"),
        ({"MFREC_HEADER_TIMEOUT": "0"}, "MFREC_HEADER_TIMEOUT='0' must be an integer from 1 to"),
        ({"MFREC_HEADER_TIMEOUT": "5s"}, "MFREC_HEADER_TIMEOUT='5s' must be an integer from 1"),
    ],
)
def test_bad_environment_variables_are_config_errors(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ServingSettings.from_env(env)
