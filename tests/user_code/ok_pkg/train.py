"""A well-behaved standalone training entry point (no TF, so the CLI tests stay fast)."""
import sys
import time


def build_model():
    return object()


def train():
    return build_model()


def main():
    print(f"argv={sys.argv!r}")
    train()


def sleep_long():
    time.sleep(120)


def uses_mlflow():
    """User code that logs with MLflow's fluent API itself."""
    import mlflow

    mlflow.log_param("user_param", "from-user-code")
    mlflow.log_metric("user_metric", 3.5)
