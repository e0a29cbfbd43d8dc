"""SageMaker's job description, read and checked: ``input/config/*.json`` and the channels.

``hyperparameters.json`` (every value a string; may be ``{}``), ``inputdataconfig.json`` (channel
→ ``TrainingInputMode``, ``ContentType``, ``S3DistributionType``, ...; optional keys may be
absent) and ``resourceconfig.json`` (``current_host``, ``hosts``; more keys on newer clusters) are
each optional, so a hand-made layout works; unknown keys are ignored. A channel is a folder in
File/FastFile mode and a FIFO ``<channel>_0`` beside the channel folders in Pipe mode.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mfrec.paths import SageMakerPaths
from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)

TRAINING, VALIDATION, ITEMS = "training", "validation", "items"
INPUT_MODES = ("File", "FastFile", "Pipe")


@dataclass(frozen=True)
class JobConfig:
    """SageMaker's three config files, read and checked (``input/config/*.json``)."""

    hyperparameters: dict[str, str]
    channels: dict[str, dict]
    current_host: str | None = None
    hosts: tuple[str, ...] = ()
    network_interface: str | None = None  # resourceconfig.json's network_interface_name

    @property
    def is_primary(self) -> bool:
        """``hosts[0]`` holds global rank 0, which writes the model."""
        return not self.hosts or self.current_host == self.hosts[0]

    def input_mode(self, channel: str) -> str:
        return self.channels.get(channel, {}).get("TrainingInputMode", "File")


def read_job_config(paths: SageMakerPaths) -> JobConfig:
    """Read hyperparameters.json, inputdataconfig.json and resourceconfig.json.

    Each file may be missing (local layouts), and every optional key may be absent; unknown keys
    are ignored.
    """
    if not (paths.base / "input").is_dir():
        raise ConfigError(
            f"{paths.base} is not a SageMaker training layout ({paths.base / 'input'} is "
            "missing). To train outside SageMaker run `mfrec train --data PATH --model-dir DIR`; "
            "to use a copied layout pass --base-dir or set SAGEMAKER_BASE_DIR."
        )
    hyperparameters = _read_json_object(paths.hyperparameters)
    channels = _read_json_object(paths.input_data_config)
    for name, channel in channels.items():
        if not isinstance(channel, dict):
            raise ConfigError(f"{paths.input_data_config}: channel {name!r} is not a JSON object")
        mode = channel.get("TrainingInputMode", "File")
        if mode not in INPUT_MODES:
            raise ConfigError(
                f"channel {name!r} has TrainingInputMode {mode!r}; mfrec reads "
                f"{', '.join(INPUT_MODES)}: choose one of those for the channel"
            )
        if str(channel.get("RecordWrapperType", "None")).lower() == "recordio":
            raise ConfigError(
                f"channel {name!r} wraps records in RecordIO; mfrec reads plain CSV, JSON lines "
                "or Parquet: set RecordWrapperType to None"
            )
    resources = _read_json_object(paths.resource_config)
    current_host, hosts = _hosts(paths.resource_config, resources)
    interface = resources.get("network_interface_name")
    return JobConfig(
        hyperparameters={str(key): _as_string(value) for key, value in hyperparameters.items()},
        channels=channels,
        current_host=current_host,
        hosts=hosts,
        network_interface=interface if isinstance(interface, str) and interface else None,
    )


def _hosts(path: Path, resources: dict) -> tuple[str | None, tuple[str, ...]]:
    """``current_host`` and ``hosts`` of resourceconfig.json, checked: a string, and a list of
    distinct non-empty strings that holds it (either may be absent on a hand-made layout)."""
    example = '{"current_host": "algo-1", "hosts": ["algo-1"]}'
    current = resources.get("current_host")
    if current is not None and not (isinstance(current, str) and current.strip()):
        raise ConfigError(
            f"{path}: current_host is {json.dumps(current)}; it must be a host name such as "
            f'"algo-1", e.g. {example}'
        )
    hosts = resources.get("hosts")
    if hosts is None:
        return current, ()
    if current is None and isinstance(hosts, list) and len(hosts) > 1:
        raise ConfigError(
            f"{path} lists hosts {hosts} but no current_host, so this host cannot tell whether "
            f"it is the primary one: add current_host, e.g. {example}"
        )
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise ConfigError(
            f"{path}: hosts is {json.dumps(hosts)[:200]}; it must be a list of host names, "
            f"e.g. {example}"
        )
    repeated = sorted({h for h in hosts if hosts.count(h) > 1})
    if repeated:
        raise ConfigError(f"{path}: hosts names {', '.join(repeated)} more than once: {example}")
    if hosts and current is not None and current not in hosts:
        raise ConfigError(
            f"{path}: current_host {current!r} is not among hosts {hosts}; they must agree, "
            f"e.g. {example}"
        )
    if current is None and hosts:
        current = hosts[0]  # one host: it is the primary
    return current, tuple(hosts)


def _read_json_object(path: Path) -> dict:
    if not path.is_file():
        logger.info("%s not found; using {}", path)
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); write it as a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} holds a {type(value).__name__}; it must be a JSON object")
    return value


def _as_string(value) -> str:
    """SageMaker sends every hyperparameter as a string; other JSON values are made one."""
    return value if isinstance(value, str) else json.dumps(value)


# --- channels ---------------------------------------------------------------------------------


def channel_data(
    paths: SageMakerPaths, job: JobConfig, name: str, scratch: Path, required: bool = False
) -> Path | None:
    """The file or folder holding channel ``name``; a Pipe-mode FIFO is first copied to ``scratch``.

    Returns None for a missing optional channel.
    """
    mode = job.input_mode(name)
    location = paths.channel(f"{name}_0" if mode == "Pipe" else name)
    if location.exists():
        if mode == "Pipe":
            return _drain_pipe(location, scratch / name, job.channels[name].get("ContentType"))
        return location
    if name in job.channels or required:
        found = _found_channels(paths, job)
        raise ConfigError(
            f"the {name!r} channel ({mode} mode) was expected at {location} but is missing "
            f"(channels found: {', '.join(found) or 'none'}); pass your interactions as a "
            f"channel named {name!r}, e.g. estimator.fit({{'{name}': 's3://bucket/prefix/'}})"
        )
    return None


def _found_channels(paths: SageMakerPaths, job: JobConfig) -> list[str]:
    names = set(job.channels)
    root = paths.channel(TRAINING).parent
    if root.is_dir():
        for entry in root.iterdir():
            names.add(re.sub(r"_\d+$", "", entry.name) if entry.is_fifo() else entry.name)
    return sorted(names)


def _drain_pipe(fifo: Path, folder: Path, content_type: str | None) -> Path:
    """Copy a Pipe-mode FIFO into a file; the importer sniffs its format from the content."""
    folder.mkdir(parents=True)
    target = folder / fifo.name
    logger.info("reading Pipe-mode channel %s (ContentType %s)", fifo, content_type or "not set")
    with open(fifo, "rb") as source, open(target, "wb") as sink:  # blocks until SageMaker writes
        shutil.copyfileobj(source, sink, 1 << 20)
    logger.info("read %d bytes from %s", target.stat().st_size, fifo)
    return target
