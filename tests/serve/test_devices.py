"""Worker placement on GPU instances (serve/devices.py), with torch.cuda faked."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from mfrec.serve import devices


class FakeRecommender:
    """What place_worker uses of a Recommender: device_spec, device, warm_up, the tensors."""

    def __init__(self, spec="auto", fail_on_cuda=None):
        self.device_spec, self.device, self._tensors = spec, None, None
        self.fail_on_cuda = fail_on_cuda
        self.warm_ups = []

    def warm_up(self):
        self.warm_ups.append(self.device_spec)
        if self.device_spec.startswith("cuda") and self.fail_on_cuda is not None:
            raise self.fail_on_cuda
        self.device = torch.device(self.device_spec if self.device_spec != "auto" else "cpu")
        self._tensors = object()


@pytest.fixture
def gpus(monkeypatch):
    """Set how many GPUs torch.cuda reports (on a CPU build too)."""

    def set_count(count):
        monkeypatch.setattr(torch.version, "cuda", "12.6")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return set_count


def test_workers_spread_over_the_gpus(gpus):
    gpus(3)
    assert [devices.worker_device(slot, "auto") for slot in range(5)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1",
    ]  # fmt: skip
    assert devices.worker_device(4, "cuda") == "cuda:1"
    assert devices.worker_device(4, "cuda:2") == "cuda:2"  # an explicit GPU is kept
    assert devices.worker_device(4, "cpu") == "cpu"


def test_without_gpus_the_spec_is_kept(gpus):
    gpus(0)
    assert devices.worker_device(3, "auto") == "auto"
    assert devices.default_workers(cpu_count=8) == 8


def test_default_workers_per_gpu(gpus):
    gpus(4)
    assert devices.default_workers(cpu_count=96) == 4 * devices.WORKERS_PER_GPU


def test_a_cpu_build_counts_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert devices.gpu_count() == 0


def test_slots_are_the_lowest_free_and_reused():
    server = SimpleNamespace(WORKERS={})
    for pid in (10, 11, 12):
        worker = SimpleNamespace()
        devices.assign_slot(server, worker)
        server.WORKERS[pid] = worker
    assert [w.mfrec_slot for w in server.WORKERS.values()] == [0, 1, 2]
    del server.WORKERS[11]  # worker of slot 1 died; its replacement takes slot 1
    replacement = SimpleNamespace()
    devices.assign_slot(server, replacement)
    assert replacement.mfrec_slot == 1


def test_a_worker_logs_its_device(gpus, caplog):
    gpus(0)
    recommender = FakeRecommender("cpu")
    with caplog.at_level(logging.INFO, logger="mfrec.serve.devices"):
        assert devices.place_worker(recommender, 0) == "cpu"
    assert "worker 0" in caplog.text and "serving from cpu" in caplog.text


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     RuntimeError("CUDA error: initialization error\nmore detail")],
    ids=["out-of-memory", "context-failure"],
)  # fmt: skip
def test_an_allocation_failure_falls_back_to_the_cpu_in_one_line(gpus, caplog, error):
    gpus(2)
    recommender = FakeRecommender("auto", fail_on_cuda=error)
    with caplog.at_level(logging.INFO, logger="mfrec.serve.devices"):
        assert devices.place_worker(recommender, 3) == "cpu"
    assert recommender.warm_ups == ["cuda:1", "cpu"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "could not place the model on cuda:1" in message and "serving from the CPU" in message
    assert "\n" not in message
    assert "serving from cpu" in caplog.text


def test_a_failure_on_the_cpu_is_not_hidden(gpus):
    gpus(0)

    class Broken(FakeRecommender):
        def warm_up(self):
            raise RuntimeError("broken model")

    with pytest.raises(RuntimeError, match="broken model"):
        devices.place_worker(Broken("cpu"), 0)


def test_the_fallback_rebuilds_a_real_recommender_on_the_cpu(gpus, monkeypatch):
    from known_answer import known_answer

    from mfrec.serve import recommender as module

    gpus(1)
    real_tensors = module.ModelTensors

    def tensors(artifact, device):
        if device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_tensors(artifact, device)

    monkeypatch.setattr(module, "resolve_device", torch.device)
    monkeypatch.setattr(module, "ModelTensors", tensors)
    recommender = module.Recommender(known_answer(), "auto")
    assert devices.place_worker(recommender, 0) == "cpu"
    assert recommender.device == torch.device("cpu")
    assert len(recommender.recommend([str(recommender.artifact.user_ids[0])])[0].item_ids) > 0


@pytest.mark.parametrize(
    ("spec", "visible", "expected"),
    [
        ("cpu", 0, True),
        ("cpu", 2, True),
        ("auto", 0, True),
        ("auto", 1, False),
        ("cuda", 0, False),
        ("cuda:1", 2, False),
    ],
)
def test_all_workers_serve_from_the_cpu_only_where_no_gpu_is_used(spec, visible, expected):
    # parametrize ids must not contain "gpu" (that would skip them on a CPU machine)
    assert devices.all_on_cpu(spec, gpus=visible) is expected
