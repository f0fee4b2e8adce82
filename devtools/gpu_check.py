"""The device check for GPU system metrics: run on a machine with an NVIDIA GPU (the device tool's).

    python -m devtools.gpu_check     # exit 0: NVML found the GPUs and MLflow's monitor sampled each

It drives the runtime's own sampler (``tracking.system_metrics.SystemMetrics``) for three samples into a
recording logger and prints what it logged, as JSON. It exits 1 when NVML finds no device or a device's
``system/gpu_<i>_utilization_percentage`` is missing. Nothing here needs an MLflow server. It is not part
of `make test` (which runs where there is no GPU: tests/runtime/test_system_metrics.py covers that side).
"""
from __future__ import annotations

import json
import sys
import time


class _Recorder:
    def __init__(self) -> None:
        self.samples: list[dict] = []

    def log_metrics(self, metrics, step, prefix=""):
        self.samples.append({"step": step, "metrics": {f"{prefix}{k}": v for k, v in metrics.items()}})


def main() -> int:
    from trainer_runtime.tracking.system_metrics import SystemMetrics

    recorder = _Recorder()
    sampler = SystemMetrics(recorder, 1.0)
    for _ in range(3):
        time.sleep(0.5)
        sampler.sample()
    status = sampler.stop()
    print(json.dumps({"status": status, "samples": recorder.samples}, indent=1))
    devices = status.get("gpu_devices", 0)
    if not devices:
        print(f"no GPU metrics: {status.get('gpu_off')}", file=sys.stderr)
        return 1
    last = recorder.samples[-1]["metrics"]
    missing = [i for i in range(devices) if f"system/gpu_{i}_utilization_percentage" not in last]
    if missing:
        print(f"no utilization sampled for GPU(s) {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
