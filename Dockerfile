# trainer-runtime: the official TFX image plus a validated MLflow tracking runtime.
# Builds with the legacy builder too (no BuildKit-only syntax).
ARG TFX_VERSION=1.16.0
FROM gcr.io/tfx-oss-public/tfx:${TFX_VERSION}

# TFRS >= 0.7.5 refuses Keras 3; the TFX 1.16 base does not set this (1.17+ do).
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=1

# Dependencies first, in their own layer: they change only with the lock.
# The lock was resolved together with TFX under the base image's pins, so pip
# reinstalls almost nothing; a conflict fails here, at build time.
COPY requirements.lock /opt/trainer-runtime/requirements.lock
RUN python -m pip install --no-cache-dir --require-hashes -r /opt/trainer-runtime/requirements.lock && \
    python -m pip check

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
# so a missing module (e.g. pkg_resources) fails this build instead of a training job.
# hadolint ignore=DL3013
# (DL3013 wants a version pin: this is our own package from the build context, and
#  --no-deps keeps every dependency at the hash-locked versions installed above.)
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation /opt/trainer-runtime/src && \
    rm -rf /opt/trainer-runtime/src && \
    python -m pip check && \
    python -c "import tfx, mlflow, pydantic, trainer_runtime; from tfx import v1; import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor; import pkg_resources, tensorflow_transform, tensorflow_model_analysis, tensorboard.program, tensorboard.main, tensorflow_recommenders, keras_tuner, tfx_bsl.public.tfxio" && \
    trainer-runtime --version

ENTRYPOINT ["python", "/opt/trainer-runtime/entrypoint.py"]
