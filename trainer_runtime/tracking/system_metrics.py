"""System metrics (CPU, memory, disk, network; GPU when NVML is there) through the run's own logger.

The sampling is MLflow's: its monitor classes (``mlflow.system_metrics.metrics``)
and their metric names (``system/cpu_utilization_percentage``, …), so the MLflow
UI shows them in its "System metrics" section as for any run. The publishing
is ours: MLflow's ``SystemMetricsMonitor`` asks the server for the run's
status before every sample and sends through ``BatchMetricsLogger``, both on
MLflow's retrying client (minutes against a down server, and at the end of a
run, on the close path). Here each sample is one non-blocking
``MetricsLogger.log_metrics`` (spooled, bounded, counted like the training's
points), and the thread is stopped and joined, briefly, before the logger closes.

GPU metrics come from MLflow's ``GPUMonitor`` on NVML (``nvidia-ml-py``, in every
base's lock): it samples ``system/gpu_<i>_utilization_percentage``, memory, power…
for each device, and starts only when NVML initializes and counts at least one
device. Otherwise the sampler runs without it and says why, once in the log and
in the status (``system_metrics.gpu_off``): no NVML bindings, no driver (the
library is not found: a CPU machine), or no device.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "system/"
#: seconds ``stop`` waits for the sampling thread (it only ever waits on an event or reads /proc)
JOIN_SECONDS = 1.0


def gpu_monitor() -> tuple[Any | None, str | None]:
    """MLflow's GPU monitor and None, or None and why there is none (for the log and the status)."""
    try:
        import pynvml  # noqa: F401 - nvidia-ml-py; MLflow's monitor needs it imported
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitor = GPUMonitor()
    except Exception as exc:  # noqa: BLE001 - NVML's own error says why (no driver library, no device)
        return None, f"NVML did not initialize: {_first_line(exc)}"
    if not monitor.num_gpus:
        _shutdown_nvml()
        return None, "NVML found no GPU device"
    return monitor, None


def _shutdown_nvml() -> None:
    """Undo the monitor's ``nvmlInit`` (NVML counts them). Never raises: the run does not depend on it."""
    try:
        import pynvml

        pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - NVML's own error; nothing is left to release
        log.debug("nvmlShutdown: %s", exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class SystemMetrics:
    """Samples every ``interval`` seconds into ``logger`` (a MetricsLogger) until ``stop``."""

    def __init__(self, logger: Any, interval: float, first_step: int = 0) -> None:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

        self._logger = logger
        self.interval = interval
        self.step = first_step
        self.samples = 0
        gpu, self.gpu_off = gpu_monitor()
        self.gpu_devices = gpu.num_gpus if gpu is not None else 0
        self._monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor(), *([gpu] if gpu is not None else [])]
        if gpu is not None:
            log.info("system metrics every %gs, with %d GPU(s)", interval, self.gpu_devices)
        else:
            log.info("system metrics every %gs, without GPU metrics: %s", interval, self.gpu_off)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml_released = False

    def start(self) -> "SystemMetrics":
        for monitor in self._monitors:  # psutil's first cpu_percent() is a baseline, not a reading
            monitor.collect_metrics()
            monitor.clear_metrics()
        self._thread = threading.Thread(target=self._loop, name="trainer-runtime-system-metrics", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a broken sensor must not take the run with it
                log.exception("system metrics: sampling failed; stopping them")
                return

    def sample(self) -> None:
        metrics: dict[str, float] = {}
        for monitor in self._monitors:
            monitor.collect_metrics()
            metrics.update(monitor.aggregate_metrics())
            monitor.clear_metrics()
        self._logger.log_metrics(metrics, self.step, prefix=PREFIX)
        self.step += 1
        self.samples += 1

    def stop(self, timeout: float = JOIN_SECONDS) -> dict[str, Any]:
        """Stop sampling (before the logger closes); what the status records."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, timeout))
        if self.gpu_devices and not self._nvml_released and not (self._thread and self._thread.is_alive()):
            self._nvml_released = True  # a thread still sampling keeps NVML: the process's end releases it
            _shutdown_nvml()
        found: dict[str, Any] = {"interval": self.interval, "samples": self.samples, "gpu": self.gpu_devices > 0}
        if self.gpu_devices:
            found["gpu_devices"] = self.gpu_devices
        else:
            found["gpu_off"] = self.gpu_off
        return found


def start(ctx: Any) -> SystemMetrics | None:
    """Start sampling for ``ctx``'s run, when ``system_metrics_interval`` is not 0. Never raises."""
    interval = ctx.config.system_metrics_interval
    if not interval:
        return None
    try:
        return SystemMetrics(ctx.logger, interval).start()
    except Exception as exc:  # noqa: BLE001 - psutil missing or /proc unreadable: the run goes on
        log.warning("system metrics are off: %s", exc)
        return None
