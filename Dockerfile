# trainer-runtime: the official TFX image plus a validated MLflow tracking runtime.
# Builds with the legacy builder too (no BuildKit-only syntax).
ARG TFX_VERSION=1.16.0
FROM gcr.io/tfx-oss-public/tfx:${TFX_VERSION}

# TFRS >= 0.7.5 refuses Keras 3; the TFX 1.16 base does not set this (1.17+ do).
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=1

# Dependencies first, in their own layer: they change only with the locks.
# Each base has its own lock, resolved together with its TFX under that base's
# pins (bases/README.md), so pip reinstalls almost nothing; a conflict fails here,
# at build time, and so does a TFX_VERSION no lock is made for.
ARG TFX_VERSION=1.16.0
COPY requirements.lock /opt/trainer-runtime/locks/tfx-1.16.0.lock
COPY bases/tfx-1.17.3/requirements.lock /opt/trainer-runtime/locks/tfx-1.17.3.lock
COPY bases/tfx-1.21.0/requirements.lock /opt/trainer-runtime/locks/tfx-1.21.0.lock
RUN lock="/opt/trainer-runtime/locks/tfx-${TFX_VERSION}.lock" && \
    if [ ! -f "$lock" ]; then \
      echo "no lock for TFX ${TFX_VERSION}; the locks made (bases/README.md): $(echo /opt/trainer-runtime/locks/tfx-*.lock)" >&2; \
      exit 1; \
    fi && \
    python -m pip install --no-cache-dir --require-hashes -r "$lock" && \
    python -m pip check && \
    mv "$lock" /opt/trainer-runtime/requirements.lock && \
    rm -rf /opt/trainer-runtime/locks

# Version metadata after the dependency layer, so a new tag or commit reuses it.
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/trainer-runtime/trainer-runtime
LABEL org.opencontainers.image.title="trainer-runtime" \
      org.opencontainers.image.description="TFX trainer with a validated MLflow tracking runtime" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
ENV TRAINER_RUNTIME_IMAGE_VERSION="${VERSION}"

COPY pyproject.toml README.md /opt/trainer-runtime/src/
COPY trainer_runtime /opt/trainer-runtime/src/trainer_runtime
COPY entrypoint.py /opt/trainer-runtime/entrypoint.py
# The smoke import covers what users' modules import (ECOSYSTEM_MODULES in the environment tests),
# so a missing module (e.g. pkg_resources) fails this build instead of a training job. pkg_resources, and
# TensorBoard's server (tensorboard 2.17 imports it), only where the base's setuptools still has it (< 81):
# TFX 1.21's base pins setuptools 82.0.0 beside tensorboard 2.17.1, so neither imports there (user guide).
# hadolint ignore=DL3013
# (DL3013 wants a version pin: this is our own package from the build context, and
#  --no-deps keeps every dependency at the hash-locked versions installed above.)
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation /opt/trainer-runtime/src && \
    rm -rf /opt/trainer-runtime/src && \
    python -m pip check && \
    python -c "import tfx, mlflow, pydantic, trainer_runtime; from tfx import v1; import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor; import tensorflow_transform, tensorflow_model_analysis, tensorflow_recommenders, keras_tuner, tfx_bsl.public.tfxio; from importlib.metadata import version; int(version('setuptools').split('.')[0]) >= 81 or [__import__(m) for m in ('pkg_resources', 'tensorboard.program', 'tensorboard.main')]" && \
    trainer-runtime --version

ENTRYPOINT ["python", "/opt/trainer-runtime/entrypoint.py"]
