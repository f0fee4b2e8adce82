"""TFX integration: the tracked Trainer executor, a run_fn shim, and the Vertex forwarder.

Importing this package is light; tfx is imported by the submodules that need it.
"""
from .compat import runtime_config

__all__ = ["runtime_config"]
