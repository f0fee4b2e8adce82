"""Write small text files atomically to a local dir or a gs:// prefix.

Local: write a temp file beside the target, then ``os.replace`` (atomic on POSIX).
GCS: one object upload, which replaces the object atomically. google-cloud-storage
honours STORAGE_EMULATOR_HOST, which the tests use (tf.io.gfile does not).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Protocol

from .errors import StatusWriteError


class TextDir(Protocol):
    def write_text(self, name: str, text: str) -> str: ...

    def describe(self) -> str: ...


class LocalDir:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def describe(self) -> str:
        return self.path

    def write_text(self, name: str, text: str) -> str:
        target = os.path.join(self.path, name)
        try:
            os.makedirs(self.path, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StatusWriteError(f"cannot write {target}: {exc.strerror or exc}",
                                   hint=f"make {self.path} writable for this user, or point "
                                        "TRAINER_RUNTIME_STATUS_DIR somewhere writable") from exc
        return target


class GcsDir:
    def __init__(self, uri: str, client_factory: Callable[[], Any] | None = None) -> None:
        rest = uri[len("gs://"):]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise StatusWriteError(f"status destination {uri!r} has no bucket",
                                   hint="use gs://BUCKET/optional/prefix")
        self.prefix = prefix.strip("/")
        self._client_factory = client_factory or _default_client
        self._client: Any = None

    def describe(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")

    def write_text(self, name: str, text: str) -> str:
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions

        key = f"{self.prefix}/{name}" if self.prefix else name
        target = f"gs://{self.bucket}/{key}"
        try:
            if self._client is None:
                self._client = self._client_factory()
            blob = self._client.bucket(self.bucket).blob(key)
            blob.upload_from_string(text, content_type="application/json", timeout=30)
        except api_exceptions.NotFound as exc:
            raise StatusWriteError(f"cannot write {target}: bucket {self.bucket!r} not found",
                                   hint="create the bucket or fix TRAINER_RUNTIME_STATUS_DIR") from exc
        except api_exceptions.Forbidden as exc:
            raise StatusWriteError(f"cannot write {target}: permission denied",
                                   hint=f"grant roles/storage.objectUser on gs://{self.bucket} to the "
                                        "job's service account") from exc
        except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as exc:
            raise StatusWriteError(f"cannot write {target}: {type(exc).__name__}: {exc}",
                                   hint="check the bucket, the network and the service account") from exc
        return target


def _default_client() -> Any:
    from google.cloud import storage

    return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))


def open_dir(destination: str) -> TextDir:
    if destination.startswith("gs://"):
        return GcsDir(destination)
    if "://" in destination:
        raise StatusWriteError(f"unsupported status destination {destination!r}",
                               hint="use a local path or gs://bucket/prefix")
    return LocalDir(destination)
