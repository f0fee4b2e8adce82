"""Which replica of a distributed training this process is: decided here, and only here.

TensorFlow's ``TF_CONFIG`` (``{"cluster": {"chief": [...], "worker": [...]}, "task":
{"type": "worker", "index": 1}}``) names every replica; Vertex AI sets it on each
replica of a CustomJob, beside its own ``CLUSTER_SPEC`` (the same shape with
worker pools, ``workerpool0`` … ``workerpool3``), which is read when
``TF_CONFIG`` is absent.

The chief is TensorFlow's: ``chief`` (or the legacy ``master``) index 0, else
``worker`` index 0 when the cluster has no chief. TFX's own ``_is_chief`` misses
that second case. Only the chief tracks the run; every other replica (workers,
``ps``, ``evaluator``) trains untracked and records its own ending beside the
chief's status (``replica.py``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Mapping

from trainer_runtime.core.envvars import CLUSTER_SPEC, TF_CONFIG

log = logging.getLogger(__name__)


#: Vertex worker pools, in order, and the TF_CONFIG task type each one is.
VERTEX_POOLS = {"workerpool0": "chief", "workerpool1": "worker", "workerpool2": "ps", "workerpool3": "evaluator"}
CHIEF_TYPES = ("chief", "master")


@dataclass(frozen=True)
class Replica:
    """This process's place in the cluster. ``task_type`` None: not distributed (a single process)."""

    task_type: str | None = None
    index: int = 0
    #: task type -> number of replicas of that type
    shape: Mapping[str, int] = field(default_factory=dict)
    source: str | None = None

    @property
    def distributed(self) -> bool:
        return self.task_type is not None and sum(self.shape.values()) > 1

    @property
    def is_chief(self) -> bool:
        """True for the one replica that tracks the run (and for a process that is not distributed)."""
        if not self.distributed:
            return True
        if self.task_type in CHIEF_TYPES:
            return self.index == 0
        has_chief = any(self.shape.get(kind) for kind in CHIEF_TYPES)
        return self.task_type == "worker" and self.index == 0 and not has_chief

    @property
    def name(self) -> str:
        """``worker-1``, ``chief-0``; ``single`` when not distributed."""
        return f"{self.task_type}-{self.index}" if self.task_type is not None else "single"

    def status_file(self) -> str:
        """Where a replica that is not the chief records its ending, beside the chief's status."""
        return f"mlflow_status.{self.name}.json"

    def tags(self) -> dict[str, str]:
        """The cluster's shape, for the chief's run: ``tf.cluster.workers`` etc., and who tracks it."""
        if not self.distributed:
            return {}
        tags = {f"tf.cluster.{_plural(kind)}": str(count) for kind, count in sorted(self.shape.items())}
        tags["tf.cluster.replicas"] = str(sum(self.shape.values()))
        tags["tf.cluster.tracked_by"] = self.name
        return tags

    def describe(self) -> dict[str, object]:
        """For a status file."""
        return {"replica": self.name, "task_type": self.task_type, "task_index": self.index,
                "cluster": dict(self.shape), "source": self.source}


def _plural(kind: str) -> str:
    return {"ps": "ps", "chief": "chief", "master": "master"}.get(kind, kind + "s")


def current(env: Mapping[str, str]) -> Replica:
    """The replica this process is, from ``TF_CONFIG``, else Vertex's ``CLUSTER_SPEC``.

    Never raises: a value that cannot be read is logged and the process counts as not
    distributed (it tracks its run), as TensorFlow would then fail the strategy in the
    user's code, where the run records it.
    """
    for name, translate in ((TF_CONFIG, None), (CLUSTER_SPEC, VERTEX_POOLS)):
        raw = (env.get(name) or "").strip()
        if not raw:
            continue
        try:
            return _parse(raw, name, translate)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            log.warning("%s is not a cluster description TensorFlow can read (%s); this process tracks "
                        "its run as if it were alone", name, exc)
            return Replica(source=name)
    return Replica()


def _parse(raw: str, source: str, translate: Mapping[str, str] | None) -> Replica:
    spec = json.loads(raw)
    cluster = spec.get("cluster") or {}
    task = spec.get("task") or {}
    if not cluster or not task.get("type"):
        return Replica(source=source)
    kind = str(task["type"])
    shape = {str(k): len(v) for k, v in cluster.items() if v}
    if translate:
        kind = translate.get(kind, kind)
        shape = {translate.get(k, k): n for k, n in shape.items()}
    return Replica(task_type=kind, index=int(task.get("index", 0)), shape=shape, source=source)
