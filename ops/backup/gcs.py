"""The backup bucket on Google Cloud Storage: streaming resumable uploads, streaming reads, listing, deletes.

Given the bucket name, an object prefix and optional credentials (the VM's
service account when empty), every call names the bucket and object in its
errors. ``endpoint`` points the real client at an emulator (tests, local mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ops.errors import ConfigError, ServiceError

UPLOAD_CHUNK = 8 << 20  # resumable upload chunk: the most an upload holds in memory
READ_CHUNK = 4 << 20


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


NO_CREDENTIALS = (
    "no Google credentials to reach GCS bucket {bucket!r}: on the VM, attach a service account with the Storage "
    "Object Admin role on the bucket (docs/BACKUPS.md); from another machine, run `gcloud auth application-default "
    "login` or set OPS_BACKUP_GCS_CREDENTIALS to a service-account key file"
)
PERMISSIONS = (
    "the VM's service account needs the Storage Object Admin role on the bucket and the VM a read-write storage "
    "scope (docs/BACKUPS.md)"
)


class Bucket:
    """One GCS bucket used for backups.

    Only object permissions are used (storage.objects.create/get/list/delete:
    the Storage Object Admin role): never the bucket's own metadata, which
    needs storage.buckets.get. A missing bucket shows as a 404 on the first
    listing or write and is named as such.
    """

    def __init__(self, name: str, endpoint: str = "", credentials_file: str = "", project: str = "") -> None:
        if not name:
            raise ConfigError("OPS_BACKUP_BUCKET is empty: set the GCS bucket for backups in vps.env")
        from google.auth import exceptions as auth_exceptions
        from google.cloud import storage  # slow import: only when a backup command runs

        self.name = name
        try:
            if endpoint:
                from google.auth.credentials import AnonymousCredentials

                self._client = storage.Client(
                    project=project or "local",
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": endpoint},
                )
            elif credentials_file:
                self._client = storage.Client.from_service_account_json(credentials_file)
            else:
                self._client = storage.Client(project=project or None)
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigError(NO_CREDENTIALS.format(bucket=name)) from exc
        except (OSError, ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise ConfigError(f"OPS_BACKUP_GCS_CREDENTIALS ({credentials_file}) is not a usable key file: {exc}") from exc
        self._bucket = self._client.bucket(name)

    @contextmanager
    def _errors(self, operation: str, object_name: str = "") -> Iterator[None]:
        """Turn the client's exceptions into an OpsError naming the bucket, the object and the operation."""
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions
        from google.cloud.storage import exceptions as storage_exceptions
        from requests import exceptions as http_exceptions

        where = f"gs://{self.name}/{object_name}" if object_name else f"GCS bucket {self.name!r}"
        try:
            yield
        except (exceptions.GoogleAPIError, storage_exceptions.InvalidResponse) as exc:
            code = getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", None)
            if code == 404 and operation != "read":  # listing or writing finds no bucket
                raise ConfigError(
                    f"GCS bucket {self.name!r} does not exist (OPS_BACKUP_BUCKET): create it or fix the name"
                ) from exc
            if code == 404:
                raise ServiceError(f"{where} does not exist") from exc
            if code in (401, 403):
                raise ConfigError(f"GCS refused to {operation} {where} ({code}): {PERMISSIONS}") from exc
            raise ServiceError(f"GCS could not {operation} {where}: {short_error(exc)}") from exc
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigError(NO_CREDENTIALS.format(bucket=self.name)) from exc
        except auth_exceptions.GoogleAuthError as exc:
            raise ConfigError(f"the Google credentials failed to {operation} {where}: {short_error(exc)}") from exc
        except http_exceptions.RequestException as exc:
            raise ServiceError(f"cannot reach GCS to {operation} {where}: {short_error(exc)}") from exc

    @contextmanager
    def writer(self, object_name: str, content_type: str = "application/octet-stream") -> Iterator[Any]:
        """Yield a file-like writer streaming to object_name with a resumable upload.

        The object exists only once the block ends without an exception; an
        exception abandons the upload session, so no partial object appears.
        Raise ConfigError if the bucket does not exist or refuses the write.
        """
        blob = self._bucket.blob(object_name)
        with self._errors("write", object_name):
            handle = blob.open("wb", chunk_size=UPLOAD_CHUNK, content_type=content_type, ignore_flush=True)
        try:
            yield _Writer(self, handle, object_name)
        except BaseException:
            try:
                handle.terminate()  # cancel the session: no partial object is ever finalized
            except Exception:
                handle._buffer.close()  # at least never finalize it (close() would)
            raise
        with self._errors("write", object_name):
            handle.close()

    def read(self, object_name: str) -> Iterator[bytes]:
        """Yield object_name's bytes in chunks. Raise OpsError if it does not exist or cannot be read."""
        blob = self._bucket.blob(object_name)
        with self._errors("read", object_name), blob.open("rb", chunk_size=READ_CHUNK) as handle:
            while chunk := handle.read(READ_CHUNK):
                yield chunk

    def read_text(self, object_name: str) -> str:
        return b"".join(self.read(object_name)).decode()

    def write_text(self, object_name: str, text: str) -> None:
        with self._errors("write", object_name):
            self._bucket.blob(object_name).upload_from_string(text.encode(), content_type="application/json")

    def list(self, prefix: str) -> list[ObjectInfo]:
        with self._errors("list", prefix):
            return [ObjectInfo(b.name, int(b.size or 0)) for b in self._client.list_blobs(self.name, prefix=prefix)]

    def delete(self, object_name: str) -> None:
        from google.api_core import exceptions

        with self._errors("delete", object_name), contextlib.suppress(exceptions.NotFound):
            self._bucket.blob(object_name).delete()


class _Writer:
    """The upload handle, with the client's errors named (a write may upload a chunk)."""

    def __init__(self, bucket: Bucket, handle: Any, object_name: str) -> None:
        self._bucket, self._handle, self._object = bucket, handle, object_name

    def write(self, data: bytes) -> int:
        with self._bucket._errors("write", self._object):
            return int(self._handle.write(data))


def short_error(exc: BaseException) -> str:
    """Given a client's exception, return its text on one line, 300 characters at most."""
    return " ".join(str(exc).split())[:300]
