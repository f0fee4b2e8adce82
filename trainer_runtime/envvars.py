"""Environment variable names the runtime reads, one place, each with its meaning.

Our own knobs share the ``TRAINER_RUNTIME_`` prefix; an unknown variable with
that prefix is a configuration error (a typo must not be silently ignored).
"""

PREFIX = "TRAINER_RUNTIME_"

MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
"""MLflow's own name for the server URL."""
MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
"""MLflow's own name for the experiment."""
MLFLOW_RUN_ID = "MLFLOW_RUN_ID"
"""MLflow's own name for a run to attach to."""
MLFLOW_TRACKING_TOKEN = "MLFLOW_TRACKING_TOKEN"
"""MLflow bearer token; read by MLflow itself, never copied by us."""
MLFLOW_TRACKING_USERNAME = "MLFLOW_TRACKING_USERNAME"
"""MLflow basic-auth user; read by MLflow itself."""
MLFLOW_TRACKING_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
"""MLflow basic-auth password; read by MLflow itself, never copied by us."""

RUN_NAME = PREFIX + "RUN_NAME"
RUN_KEY = PREFIX + "RUN_KEY"
AUTH = PREFIX + "AUTH"
AUDIENCE = PREFIX + "AUDIENCE"
PREFLIGHT_TIMEOUT = PREFIX + "PREFLIGHT_TIMEOUT"
REQUEST_TIMEOUT = PREFIX + "REQUEST_TIMEOUT"
STATUS_DIR = PREFIX + "STATUS_DIR"
LOG_EVERY_N_STEPS = PREFIX + "LOG_EVERY_N_STEPS"
LOG_FORMAT = PREFIX + "LOG_FORMAT"
BEAM_LOG_LEVEL = PREFIX + "BEAM_LOG_LEVEL"
QUEUE_SIZE = PREFIX + "QUEUE_SIZE"
FLUSH_TIMEOUT = PREFIX + "FLUSH_TIMEOUT"
SIGTERM_GRACE = PREFIX + "SIGTERM_GRACE"
SEND_TIMEOUT = PREFIX + "SEND_TIMEOUT"
HEARTBEAT_INTERVAL = PREFIX + "HEARTBEAT_INTERVAL"
SPOOL_DIR = PREFIX + "SPOOL_DIR"
RECORD_MODEL = PREFIX + "RECORD_MODEL"
REGISTER_MODEL_NAME = PREFIX + "REGISTER_MODEL_NAME"
MODEL_RECORD_TIMEOUT = PREFIX + "MODEL_RECORD_TIMEOUT"
LOG_DATASETS = PREFIX + "LOG_DATASETS"
SYSTEM_METRICS_INTERVAL = PREFIX + "SYSTEM_METRICS_INTERVAL"
LINK_TAGS = PREFIX + "LINK_TAGS"
IMAGE_DIGEST = PREFIX + "IMAGE_DIGEST"
RUN_FN = PREFIX + "RUN_FN"
IMAGE_VERSION = PREFIX + "IMAGE_VERSION"
COMPILED_WITH = PREFIX + "COMPILED_WITH"
TRACK_TRIALS = PREFIX + "TRACK_TRIALS"

GOOGLE_APPLICATION_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
"""Path to a service-account key file: google-auth's first ID-token source."""
GCE_METADATA_HOST = "GCE_METADATA_HOST"
"""Metadata server host google-auth uses (tests point it at a local one)."""
AIP_MODEL_DIR = "AIP_MODEL_DIR"
"""Set by Vertex AI custom jobs: the model output dir (our standalone status default)."""

#: Presence of any of these means we run on GCP (Vertex jobs/pipelines, Cloud Run).
GCP_MARKERS = ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "AIP_MODEL_DIR", "K_SERVICE",
               "VERTEX_AI_PIPELINES_RUN_LABELS")
