"""TFX integration: the tracked Trainer executor (``executor``, shared with the run_fn shim through
``tracked``), the run_fn shim (``run_fn``), the ``default_commands`` forwarder (``vertex``), the
tracked Vertex AI Training launcher (``vertex_training``), the tracked Tuner (``tuner``, its trials in
``trials``), and what a Trainer run records besides metrics (``lineage``, ``inputs``,
``model_record``, ``links``). Public paths compiled pipelines name live here.

Importing this package is light; tfx is imported by the submodules that need it.

May import: core, status, tracking, training, run.
"""
from trainer_runtime.tfx.compat import runtime_config

__all__ = ["runtime_config"]
