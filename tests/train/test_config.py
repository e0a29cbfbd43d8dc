"""TrainConfig: parsing SageMaker's string hyperparameters, ranges, unknown keys."""

from __future__ import annotations

import dataclasses

import pytest

from mfrec.train.config import AUTO_NEGATIVES, TrainConfig
from mfrec.train.errors import ConfigError


def test_empty_hyperparameters_give_the_defaults():
    assert TrainConfig.from_hyperparameters({}) == TrainConfig()


def test_strings_are_parsed_to_typed_values():
    config = TrainConfig.from_hyperparameters(
        {
            "embedding_dim": "32",
            "num_epochs": "5.0",
            "learning_rate": "1e-3",
            "loss": "BPR",
            "user_bias": "True",
            "refit": "no",
            "num_negatives": "auto",
            "device": "cuda:1",
        }
    )
    assert config.embedding_dim == 32 and config.num_epochs == 5
    assert config.learning_rate == pytest.approx(0.001)
    assert config.loss == "bpr"
    assert config.user_bias is True and config.refit is False
    assert config.num_negatives is None and config.negatives == AUTO_NEGATIVES["bpr"]
    assert config.device == "cuda:1"


@pytest.mark.parametrize(
    "text, expected",
    [("TRUE", True), ("1", True), ("Yes", True), ("false", False), ("0", False), ("NO", False)],
)
def test_booleans_any_case(text, expected):
    assert TrainConfig.from_hyperparameters({"user_bias": text}).user_bias is expected


def test_underscore_sagemaker_and_ignored_keys_are_skipped():
    config = TrainConfig.from_hyperparameters(
        {"_tuning_objective_metric": "x", "sagemaker_program": "y", "min_user_interactions": "5"},
        ignore={"min_user_interactions"},
    )
    assert config == TrainConfig()


def test_unknown_key_lists_the_valid_names():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'epochs'.*num_epochs"):
        TrainConfig.from_hyperparameters({"epochs": "3"})


def test_unknown_key_message_includes_ignored_names():
    with pytest.raises(ConfigError, match="min_user_interactions"):
        TrainConfig.from_hyperparameters({"bogus": "1"}, ignore={"min_user_interactions"})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("learning_rate", "0", r"learning_rate=0.0 is out of range; allowed: numbers > 0"),
        ("learning_rate", "fast", r"learning_rate='fast' is not a number"),
        ("embedding_dim", "12.5", r"embedding_dim='12.5' is not a whole number"),
        (
            "embedding_dim",
            "0",
            r"embedding_dim=0 is out of range; allowed: auto or integers 1 to 4096",
        ),
        ("loss", "warp", r"loss='warp' is out of range; allowed: softmax, bpr, hinge"),
        ("negative_sampling", "zipf", r"allowed: uniform, popularity"),
        ("user_bias", "maybe", r"user_bias='maybe' is not a boolean; use true or false"),
        ("device", "gpu", r"device='gpu' is out of range; allowed: auto, cpu, cuda, cuda:N"),
        ("validation_fraction", "0.9", r"allowed: numbers 0 \(no hold-out\) to 0.5"),
        ("num_negatives", "-1", r"allowed: auto or integers 1 to"),
    ],
)
def test_bad_values_name_the_allowed_range(key, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters({key: value})


def test_warmup_longer_than_training_is_refused():
    with pytest.raises(ConfigError, match="warmup_epochs=5 exceeds num_epochs=3"):
        TrainConfig(num_epochs=3, warmup_epochs=5)


def test_config_is_frozen_and_to_dict_resolves_negatives():
    config = TrainConfig(loss="adaptive_hinge")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.loss = "bpr"
    values = config.to_dict()
    assert values["num_negatives"] == AUTO_NEGATIVES["adaptive_hinge"]
    assert set(values) == set(TrainConfig.hyperparameter_names())
    # The saved dict parses back into the same configuration.
    again = TrainConfig.from_hyperparameters({k: str(v) for k, v in values.items()})
    assert again.to_dict() == values


def test_num_negatives_above_the_catalogue_is_out_of_range_like_other_values():
    """Issue 17: 1,048,576 negatives on a 665-item catalogue made one epoch take minutes."""
    with pytest.raises(
        ConfigError,
        match=r"num_negatives=1048576 is out of range for this data's 665 items; allowed: auto "
        r"or integers 1 to 665 \(the number of items\)",
    ):
        TrainConfig(num_negatives=1 << 20).check_catalogue(665)
    TrainConfig(num_negatives=665).check_catalogue(665)  # the bound itself is fine
    TrainConfig().check_catalogue(20)  # auto resolves by the loss, whatever the catalogue
    TrainConfig(model="ials", num_negatives=1 << 20).check_catalogue(20)  # iALS draws none
