"""Hyperparameter tuning of mfrec's training job: the parameter ranges and the
``CreateHyperParameterTuningJob`` request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mfrec.sagemaker.requests import DEFAULT_OBJECTIVE, check_name
from mfrec.train.errors import ConfigError


@dataclass(frozen=True)
class IntegerRange:
    min_value: int
    max_value: int
    scaling: str = "Auto"  # Auto | Linear | Logarithmic | ReverseLogarithmic


@dataclass(frozen=True)
class ContinuousRange:
    min_value: float
    max_value: float
    scaling: str = "Auto"


@dataclass(frozen=True)
class CategoricalRange:
    values: tuple[str, ...]


def tuning_job_request(
    job_name: str,
    training_request: Mapping,
    ranges: Mapping[str, IntegerRange | ContinuousRange | CategoricalRange],
    *,
    objective_metric: str = DEFAULT_OBJECTIVE,
    max_jobs: int = 20,
    max_parallel_jobs: int = 2,
    strategy: str = "Bayesian",
) -> dict:
    """The ``CreateHyperParameterTuningJob`` request that tunes ``ranges`` of a training job.

    ``training_request`` is a :func:`training_job_request` (its name is not used; its
    hyperparameters stay fixed except the tuned ones). The objective, maximised, is one of the
    metric names of :func:`metric_definitions` (default: the final validation NDCG@10).
    """
    names = [
        metric["Name"] for metric in training_request["AlgorithmSpecification"]["MetricDefinitions"]
    ]
    if objective_metric not in names:
        raise ConfigError(
            f"objective_metric={objective_metric!r} is not a metric mfrec reports; "
            f"use one of: {', '.join(names)}"
        )
    if len(job_name) > 32:
        raise ConfigError(f"tuning job name {job_name!r} is longer than 32 characters; shorten it")
    definition = {
        key: value
        for key, value in training_request.items()
        if key not in ("TrainingJobName", "HyperParameters", "Environment", "Tags")
    }
    static = {k: v for k, v in training_request["HyperParameters"].items() if k not in ranges}
    definition["StaticHyperParameters"] = static
    if "Environment" in training_request:
        definition["Environment"] = training_request["Environment"]
    request = {
        "HyperParameterTuningJobName": check_name(job_name, "tuning job name"),
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize",
                "MetricName": objective_metric,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": int(max_jobs),
                "MaxParallelTrainingJobs": int(max_parallel_jobs),
            },
            "ParameterRanges": _parameter_ranges(ranges),
        },
        "TrainingJobDefinition": definition,
    }
    if "Tags" in training_request:
        request["Tags"] = training_request["Tags"]
    return request


def _parameter_ranges(ranges: Mapping) -> dict:
    out: dict[str, list] = {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for name, spec in ranges.items():
        if isinstance(spec, CategoricalRange):
            values = [str(v) for v in spec.values]
            out["CategoricalParameterRanges"].append({"Name": name, "Values": values})
            continue
        if not isinstance(spec, (IntegerRange, ContinuousRange)):
            raise ConfigError(
                f"range for {name!r} must be an IntegerRange, ContinuousRange or CategoricalRange"
            )
        if spec.min_value > spec.max_value:
            raise ConfigError(f"range for {name!r} has min_value > max_value; swap them")
        kind = (
            "IntegerParameterRanges"
            if isinstance(spec, IntegerRange)
            else "ContinuousParameterRanges"
        )
        out[kind].append(
            {
                "Name": name,
                "MinValue": str(spec.min_value),
                "MaxValue": str(spec.max_value),
                "ScalingType": spec.scaling,
            }
        )
    return out
