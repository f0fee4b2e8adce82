"""What a platform reads to learn a run's fate: ``mlflow_status.json`` and ``mlflow_info.json``
(``reporter``), written atomically to a local dir or ``gs://`` (``storage``), read back into a typed
``StatusView`` by ``read(uri)`` and ``list_trainings(root)`` (``reader``), and told for people, or
as JSON, by ``trainer-runtime status`` (``view``).

May import: core.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_runtime.status.reader import StatusNotFound, StatusView, list_trainings, read

__all__ = ["StatusNotFound", "StatusView", "list_trainings", "read"]


def __getattr__(name: str) -> Any:
    # Lazily, so that importing this package (as every run does) reads no more than it needs.
    if name in __all__:
        from trainer_runtime.status import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
