"""Can the compose file's Postgres image start on the stack's existing postgres-data volume?

A volume initialised by an older major (15, before this stack moved to 18) holds
its cluster at the volume's root: the 15 image mounted the volume at
/var/lib/postgresql/data, its PGDATA. The 18 image mounts it at /var/lib/postgresql
with PGDATA /var/lib/postgresql/18/docker, finds the old cluster at
/var/lib/postgresql and exits ("there appears to be PostgreSQL data in"), so its
container restart-loops and every app loses its database. The check below is
the image entrypoint's own, run read-only in a throwaway container before
anything is recreated (source: docker-library/postgres 18/trixie/docker-entrypoint.sh,
docker_setup_env and docker_error_old_databases).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException, NotFound

from ops.errors import ConfigError, ServiceError
from ops.runtime import docker
from ops.runtime.compose import Compose

RUNBOOK = 'docs/RUNBOOK.md, "Postgres 15 -> 18"'
MOUNT = "/var/lib/postgresql"
# The entrypoint's test: a cluster in PGDATA starts; otherwise a PG_VERSION in any of these is refused.
_PROBE = f"""
[ -s "$PGDATA/PG_VERSION" ] && exit 0
for d in {MOUNT} {MOUNT}/data {MOUNT}/*/docker; do
  [ -s "$d/PG_VERSION" ] && printf '%s %s\\n' "$d" "$(cat "$d/PG_VERSION")"
done
exit 0
"""


@dataclass(frozen=True)
class OldCluster:
    path: str  # as the image sees it, under /var/lib/postgresql
    major: str


@dataclass(frozen=True)
class PostgresVolume:
    name: str  # the Docker volume, e.g. aistack_postgres-data
    image: str
    environment: dict[str, str]


def postgres_volume(compose: Compose) -> PostgresVolume:
    """Given the stack's Compose, return the postgres service's data volume and image. Raise ConfigError if it has none."""
    config: dict[str, Any] = json.loads(compose.run("config", "--format", "json").stdout)
    service = (config.get("services") or {}).get("postgres")
    if not service:
        raise ConfigError("the compose file has no postgres service")
    for mount in service.get("volumes") or []:
        if mount.get("type") == "volume" and mount.get("target") == MOUNT:
            name = ((config.get("volumes") or {}).get(mount.get("source")) or {}).get("name") or mount.get("source")
            environment = {k: str(v) for k, v in (service.get("environment") or {}).items() if k == "PGDATA"}
            return PostgresVolume(str(name), str(service.get("image", "")), environment)
    raise ConfigError(f"the postgres service mounts no named volume at {MOUNT}")


def old_clusters(compose: Compose) -> tuple[PostgresVolume, list[OldCluster]]:
    """Given the stack's Compose, return its postgres volume and the clusters there its image would refuse.

    The list is empty when the volume does not exist yet (a first start) or holds
    the image's own cluster. The volume is mounted read-only; nothing is created or changed.
    Raise ServiceError if Docker cannot be asked.
    """
    volume = postgres_volume(compose)
    client = docker.client(compose.docker_host)
    try:
        client.volumes.get(volume.name)
    except NotFound:
        return volume, []
    except DockerException as exc:
        raise ServiceError(f"cannot inspect the volume {volume.name}: {exc}") from exc
    try:
        output = client.containers.run(
            volume.image,
            entrypoint=["sh", "-c", _PROBE],
            environment=volume.environment,
            volumes={volume.name: {"bind": MOUNT, "mode": "ro"}},
            user="0",
            network_disabled=True,
            remove=True,
        )
    except DockerException as exc:
        raise ServiceError(f"cannot read {volume.name} with {volume.image}: {exc}") from exc
    found = [line.split(" ", 1) for line in output.decode(errors="replace").splitlines() if " " in line]
    return volume, [OldCluster(path, major.strip()) for path, major in found]


def require_startable_volume(compose: Compose) -> None:
    """Given the stack's Compose, return if its Postgres image can start on the postgres-data volume.

    Raise ConfigError naming the old cluster and the runbook's section if the
    image would refuse it (before compose recreates the running container).
    """
    volume, clusters = old_clusters(compose)
    if clusters:
        found = ", ".join(f"PostgreSQL {c.major} in {c.path}" for c in clusters)
        raise ConfigError(
            f"the volume {volume.name} holds {found}, which {volume.image} refuses to start on: its container would "
            f"restart-loop and take every app's database down. Nothing was changed; move the data first ({RUNBOOK})"
        )
