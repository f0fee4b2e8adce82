"""trainer_runtime: TFX trainer runtime with validated MLflow tracking."""
__version__ = "0.1.0"
