"""trainer_runtime: TFX trainer runtime with validated MLflow tracking.

Subpackages, each building only on those before it: ``core`` -> ``status`` -> ``tracking`` ->
``training`` -> ``run`` -> ``commands`` and ``tfx``. A run starts in ``run.session.run_session``,
is decided in ``run.outcome.decide``, is closed in ``run.closing.close_run`` and leaves the process
through ``run.exits.exit_with``. ``cli`` is the
console script's public path (``trainer_runtime.cli:main``).
"""
__version__ = "0.1.0"
