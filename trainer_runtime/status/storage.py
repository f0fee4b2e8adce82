"""Write, read and list small files atomically in a local dir or a gs:// prefix.

Local: write a temp file beside the target, then ``os.replace`` (atomic on POSIX).
GCS: one object upload, which replaces the object atomically. google-cloud-storage
honours STORAGE_EMULATOR_HOST, which the tests use (tf.io.gfile does not).

GCS writes are retried with google-cloud-storage's own policy (``DEFAULT_RETRY``:
its transient-error predicate and jittered backoff); every write overwrites a
whole object, so retrying it unconditionally is safe. The policy is applied
around the upload rather than passed into it, because inside an upload the
library keeps only the policy's *sleep* budget: a hanging request would run
past any deadline. Around it, ``deadline`` bounds the wall-clock time of the
write, requests included.

Reads raise ``FileNotFoundError`` when there is nothing there and another
``OSError`` (``PermissionError``, ``ConnectionError``) naming the cause and the
fix otherwise, as ``open()`` would.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Protocol

from trainer_runtime.core import envvars
from trainer_runtime.core.errors import StatusWriteError

log = logging.getLogger(__name__)

#: a write's total budget, retries included, unless the caller passes a deadline
DEFAULT_DEADLINE = 60.0
#: the longest any one request may take
REQUEST_TIMEOUT = 30.0
_MIN_REQUEST_TIMEOUT = 0.5


class TextDir(Protocol):
    def write_text(self, name: str, text: str, deadline: float | None = None) -> str: ...

    def write_file(self, name: str, local_path: str, deadline: float | None = None) -> str: ...

    def read_text(self, name: str) -> str: ...

    def download(self, name: str, local_path: str) -> None: ...

    def list_names(self, prefix: str = "") -> list[str]: ...

    def dirs_with(self, name: str) -> list["TextDir"]: ...

    def describe(self) -> str: ...


class LocalDir:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def describe(self) -> str:
        return self.path

    def write_text(self, name: str, text: str, deadline: float | None = None) -> str:
        """Write ``text`` to ``name`` atomically. ``deadline`` is accepted for symmetry with GCS."""
        def fill(fh) -> None:
            fh.write(text.encode("utf-8"))
        return self._replace(name, fill)

    def write_file(self, name: str, local_path: str, deadline: float | None = None) -> str:
        """Copy the file at ``local_path`` to ``name`` atomically (a reader never sees half of it)."""
        def fill(fh) -> None:
            with open(local_path, "rb") as src:
                shutil.copyfileobj(src, fh)
        return self._replace(name, fill)

    def read_text(self, name: str) -> str:
        with open(os.path.join(self.path, name), encoding="utf-8") as fh:
            return fh.read()

    def download(self, name: str, local_path: str) -> None:
        """Copy ``name`` to ``local_path``. Raises FileNotFoundError when it is not there."""
        shutil.copyfile(os.path.join(self.path, name), local_path)

    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the files directly in this dir that start with ``prefix``, sorted."""
        try:
            entries = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if n.startswith(prefix) and os.path.isfile(os.path.join(self.path, n)))

    def dirs_with(self, name: str) -> list[TextDir]:
        """Every dir at any depth below this one (itself included) holding a file called ``name``, by path."""
        return [LocalDir(top) for top, _, files in sorted(os.walk(self.path)) if name in files]

    def _replace(self, name: str, fill: Callable[[Any], None]) -> str:
        target = os.path.join(self.path, name)
        try:
            os.makedirs(self.path, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.path)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fill(fh)
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

    def write_text(self, name: str, text: str, deadline: float | None = None) -> str:
        """Upload ``text`` as ``name``, retrying transient errors for at most ``deadline`` seconds.

        Raises:
            StatusWriteError: the bucket is missing or forbidden, or the write still
                failed when the deadline (default ``DEFAULT_DEADLINE``) ran out.
        """
        return self._upload(name, lambda blob, timeout: blob.upload_from_string(
            text, content_type=_content_type(name), timeout=timeout, retry=None), deadline)

    def write_file(self, name: str, local_path: str, deadline: float | None = None) -> str:
        """Upload the file at ``local_path`` as ``name``; retried and bounded as ``write_text``."""
        return self._upload(name, lambda blob, timeout: blob.upload_from_filename(
            local_path, content_type=_content_type(name), timeout=timeout, retry=None), deadline)

    def read_text(self, name: str) -> str:
        from google.api_core import exceptions as api_exceptions

        target = self._uri(name)
        try:
            return self._blob(name).download_as_text(timeout=REQUEST_TIMEOUT)
        except api_exceptions.NotFound as exc:
            raise FileNotFoundError(f"{target} does not exist (or its bucket does not)") from exc
        except Exception as exc:
            raise _read_error(target, self.bucket, exc) from exc

    def download(self, name: str, local_path: str) -> None:
        """Copy the object ``name`` to ``local_path``. Raises FileNotFoundError when it is not there."""
        from google.api_core import exceptions as api_exceptions

        target = self._uri(name)
        try:
            self._blob(name).download_to_filename(local_path, timeout=REQUEST_TIMEOUT)
        except api_exceptions.NotFound as exc:
            raise FileNotFoundError(f"{target} does not exist (or its bucket does not)") from exc
        except Exception as exc:
            raise _read_error(target, self.bucket, exc) from exc

    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the objects directly under this prefix that start with ``prefix``, sorted."""
        from google.api_core import exceptions as api_exceptions

        base = f"{self.prefix}/" if self.prefix else ""
        try:
            blobs = self._get_client().list_blobs(self.bucket, prefix=base + prefix, delimiter="/",
                                                  timeout=REQUEST_TIMEOUT)
            return sorted(b.name[len(base):] for b in blobs)
        except api_exceptions.NotFound as exc:
            raise FileNotFoundError(f"bucket gs://{self.bucket} does not exist") from exc
        except Exception as exc:
            raise _read_error(self.describe(), self.bucket, exc) from exc

    def dirs_with(self, name: str) -> list[TextDir]:
        """Every prefix at any depth below this one (itself included) holding an object called ``name``,
        by path; they share this one's client. The bucket matches the names (``matchGlob``), so a
        pipeline root's many other objects are not listed."""
        from google.api_core import exceptions as api_exceptions

        base = f"{self.prefix}/" if self.prefix else ""
        try:
            blobs = self._get_client().list_blobs(self.bucket, prefix=base, match_glob=f"{base}**{name}",
                                                  timeout=REQUEST_TIMEOUT)
            keys = sorted(b.name for b in blobs)
        except api_exceptions.NotFound as exc:
            raise FileNotFoundError(f"bucket gs://{self.bucket} does not exist") from exc
        except Exception as exc:
            raise _read_error(self.describe(), self.bucket, exc) from exc
        return [GcsDir(f"gs://{self.bucket}/{key[:-len(name)]}", self._get_client)
                for key in keys if key == base + name or key.endswith("/" + name)]

    def _uri(self, name: str) -> str:
        return f"{self.describe()}/{name}"

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _blob(self, name: str) -> Any:
        key = f"{self.prefix}/{name}" if self.prefix else name
        return self._get_client().bucket(self.bucket).blob(key)

    def _upload(self, name: str, upload: Callable[[Any, float], None], deadline: float | None) -> str:
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions
        from google.cloud.storage.retry import DEFAULT_RETRY

        target = self._uri(name)
        budget = DEFAULT_DEADLINE if deadline is None else max(0.0, deadline)
        ends = time.monotonic() + budget
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            remaining = ends - time.monotonic()
            upload(self._blob(name), max(_MIN_REQUEST_TIMEOUT, min(REQUEST_TIMEOUT, remaining)))

        def on_error(exc: Exception) -> None:
            log.warning("attempt %s to write %s failed (%s); retrying for up to %.1f s more",
                        attempts, target, _brief(exc), max(0.0, ends - time.monotonic()))

        try:
            DEFAULT_RETRY.with_timeout(budget)(attempt, on_error=on_error)()
        except api_exceptions.NotFound as exc:
            raise StatusWriteError(f"cannot write {target}: bucket {self.bucket!r} not found",
                                   hint="create the bucket or fix TRAINER_RUNTIME_STATUS_DIR") from exc
        except api_exceptions.Forbidden as exc:
            raise StatusWriteError(f"cannot write {target}: permission denied",
                                   hint=f"grant roles/storage.objectUser on gs://{self.bucket} to the "
                                        "job's service account") from exc
        except api_exceptions.RetryError as exc:
            raise StatusWriteError(f"cannot write {target}: still failing after {attempts} attempt(s) in "
                                   f"{budget:.1f} s: {_brief(exc.cause or exc)}",
                                   hint="GCS or the network is failing; check "
                                        "https://status.cloud.google.com and the job's network") from exc
        except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as exc:
            raise StatusWriteError(f"cannot write {target}: {_brief(exc)}",
                                   hint="check the bucket, the network and the service account") from exc
        return target


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _read_error(target: str, bucket: str, exc: Exception) -> OSError:
    from google.api_core import exceptions as api_exceptions

    if isinstance(exc, api_exceptions.Forbidden):
        return PermissionError(f"cannot read {target}: permission denied; grant roles/storage.objectViewer "
                               f"on gs://{bucket} to the account you are using")
    return ConnectionError(f"cannot read {target}: {_brief(exc)}; check the network and your credentials "
                           "(gcloud auth application-default login)")


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".jsonl"):
        return "application/x-ndjson"
    return "application/octet-stream"


def _default_client() -> Any:
    from google.cloud import storage

    return storage.Client(project=os.environ.get(envvars.GOOGLE_CLOUD_PROJECT))


def open_dir(destination: str) -> TextDir:
    if destination.startswith("gs://"):
        return GcsDir(destination)
    if "://" in destination:
        raise StatusWriteError(f"unsupported status destination {destination!r}",
                               hint="use a local path or gs://bucket/prefix")
    return LocalDir(destination)
