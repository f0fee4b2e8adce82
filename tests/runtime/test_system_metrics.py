"""GPU system metrics: MLflow's GPU monitor on NVML when a device is there, off and saying why otherwise.

This machine has no GPU and no NVIDIA driver: the real path here is NVML failing to load its library,
and nvidia-ml-py missing altogether. A device cannot be had here, so one test stands a scripted NVML
module in for the driver (a mock, for that reason alone) and lets MLflow's own GPUMonitor sample it
through the runtime's sampler.
"""
from __future__ import annotations

import logging
import sys
import types

import pytest

from trainer_runtime.tracking import system_metrics


class Recorder:
    """The logger's ``log_metrics`` as the sampler calls it."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict, int, str]] = []

    def log_metrics(self, metrics, step, prefix=""):
        self.logged.append((dict(metrics), step, prefix))


def test_the_sampler_on_this_machines_own_nvml(caplog):
    """The real NVML of the machine the suite runs on. Without a driver (this project's CI): GPU metrics
    off, saying NVML's own words, and none made up. With a driver and devices (a GPU machine, the device
    check): MLflow's monitor samples ``gpu_<i>_*`` for each device."""
    import pynvml  # nvidia-ml-py is in every lock (test_installed_env_equals_the_lock)

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        devices, why = 0, f"NVML did not initialize: Failed to initialize NVML, skip logging GPU metrics: {exc}"
    else:
        devices = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        why = None if devices else "NVML found no GPU device"
    caplog.set_level(logging.INFO, "trainer_runtime.tracking.system_metrics")
    sampler = system_metrics.SystemMetrics(Recorder(), 60)
    sampler.sample()
    status = sampler.stop()
    keys = sampler._logger.logged[0][0]
    gpu_keys = sorted(k for k in keys if k.startswith("gpu"))
    said = [r.getMessage() for r in caplog.records]
    if devices:
        assert status == {"interval": 60, "samples": 1, "gpu": True, "gpu_devices": devices}
        assert {f"gpu_{i}_utilization_percentage" for i in range(devices)} <= set(gpu_keys), gpu_keys
        assert said == [f"system metrics every 60s, with {devices} GPU(s)"]
    else:
        assert status["gpu"] is False and "gpu_devices" not in status and status["gpu_off"] == why
        assert keys and gpu_keys == [], "no GPU metric is made up"
        assert said == [f"system metrics every 60s, without GPU metrics: {why}"]


def test_without_nvidia_ml_py_it_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what an interpreter without the package sees
    monitor, why = system_metrics.gpu_monitor()
    assert monitor is None and why == "nvidia-ml-py (pynvml) is not installed"


def _scripted_nvml(devices: int) -> types.ModuleType:
    """NVML's Python API as nvidia-ml-py exposes it, answering for ``devices`` GPUs (mock: no GPU here)."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nvml.NVMLError = NVMLError
    nvml.nvmlInit = lambda: None
    nvml.shutdowns = []
    nvml.nvmlShutdown = lambda: nvml.shutdowns.append("nvmlShutdown")
    nvml.nvmlDeviceGetCount = lambda: devices
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=40e9, total=80e9)
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87)
    nvml.nvmlDeviceGetPowerUsage = lambda h: 350_000
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    return nvml


@pytest.mark.parametrize("devices", [1, 0])
def test_with_nvml_the_gpus_are_sampled_by_mlflows_monitor_and_none_found_is_said(monkeypatch, caplog, devices):
    from mlflow.system_metrics.metrics import gpu_monitor

    nvml = _scripted_nvml(devices)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(gpu_monitor, "pynvml", nvml, raising=False)
    caplog.set_level(logging.INFO, "trainer_runtime.tracking.system_metrics")
    recorder = Recorder()
    sampler = system_metrics.SystemMetrics(recorder, 5)
    sampler.sample()
    status = sampler.stop()
    metrics, step, prefix = recorder.logged[0]
    gpu = {k: v for k, v in metrics.items() if k.startswith("gpu")}
    if devices:
        assert status == {"interval": 5, "samples": 1, "gpu": True, "gpu_devices": 1}
        assert prefix == "system/" and gpu == {"gpu_0_memory_usage_percentage": 50.0,
                                               "gpu_0_memory_usage_megabytes": 40000.0,
                                               "gpu_0_utilization_percentage": 87.0,
                                               "gpu_0_power_usage_watts": 350.0,
                                               "gpu_0_power_usage_percentage": 50.0}
        assert [r.getMessage() for r in caplog.records] == ["system metrics every 5s, with 1 GPU(s)"]
    else:
        assert status["gpu"] is False and status["gpu_off"] == "NVML found no GPU device" and gpu == {}
    assert nvml.shutdowns == ["nvmlShutdown"], "NVML's initialization is undone, once (at 0 devices, at once)"
    sampler.stop()
    assert nvml.shutdowns == ["nvmlShutdown"]
