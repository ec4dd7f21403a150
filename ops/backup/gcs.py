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


class Bucket:
    """One GCS bucket used for backups."""

    def __init__(self, name: str, endpoint: str = "", credentials_file: str = "", project: str = "") -> None:
        if not name:
            raise ConfigError("OPS_BACKUP_BUCKET is empty: set the GCS bucket for backups in vps.env")
        from google.cloud import storage  # slow import: only when a backup command runs

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
        self.name = name
        self._bucket = self._client.bucket(name)

    def check(self) -> None:
        """Raise ConfigError if the bucket does not exist or cannot be reached."""
        from google.api_core import exceptions

        try:
            if not self._bucket.exists():
                raise ConfigError(f"GCS bucket {self.name!r} does not exist (OPS_BACKUP_BUCKET); create it first")
        except exceptions.GoogleAPIError as exc:
            raise ServiceError(f"cannot reach GCS bucket {self.name!r}: {exc}") from exc

    @contextmanager
    def writer(self, object_name: str, content_type: str = "application/octet-stream") -> Iterator[Any]:
        """Yield a file-like writer streaming to object_name with a resumable upload.

        The object exists only once the block ends without an exception; an
        exception abandons the upload session, so no partial object appears.
        """
        blob = self._bucket.blob(object_name)
        handle = blob.open("wb", chunk_size=UPLOAD_CHUNK, content_type=content_type, ignore_flush=True)
        try:
            yield handle
        except BaseException:
            try:
                handle.terminate()  # cancel the session: no partial object is ever finalized
            except Exception:
                handle._buffer.close()  # at least never finalize it (close() would)
            raise
        handle.close()

    def read(self, object_name: str) -> Iterator[bytes]:
        """Yield object_name's bytes in chunks. Raise OpsError if it does not exist."""
        from google.api_core import exceptions

        blob = self._bucket.blob(object_name)
        try:
            with blob.open("rb", chunk_size=READ_CHUNK) as handle:
                while chunk := handle.read(READ_CHUNK):
                    yield chunk
        except exceptions.NotFound as exc:
            raise ServiceError(f"gs://{self.name}/{object_name} does not exist") from exc

    def read_text(self, object_name: str) -> str:
        return b"".join(self.read(object_name)).decode()

    def write_text(self, object_name: str, text: str) -> None:
        self._bucket.blob(object_name).upload_from_string(text.encode(), content_type="application/json")

    def list(self, prefix: str) -> list[ObjectInfo]:
        return [ObjectInfo(b.name, int(b.size or 0)) for b in self._client.list_blobs(self.name, prefix=prefix)]

    def delete(self, object_name: str) -> None:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.NotFound):
            self._bucket.blob(object_name).delete()
