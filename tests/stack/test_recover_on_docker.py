"""Disaster recovery on a real Docker engine: a stack with data everywhere, backed up, the host wiped, `ops recover`.

The stack holds: tables in the postgres, n8n and litellm databases (one of them n8n's credentials_entity with a
credential encrypted as n8n encrypts it, with N8N_ENCRYPTION_KEY), two Qdrant collections in the snapshot API's
contract fake, the n8n-data volume (n8n's settings file with its key, and a file of its own), the truth
repository (two branches, a tag) and .ops/ (a change request, a finished snapshot, an unfinished one and a lock:
those two stay behind). A daily and a weekly backup, age-encrypted, go to the GCS emulator.

"The new VM": the project's containers, volumes and networks are removed from the engine (checked: nothing of
the compose project is left) and its directory replaced by a fresh checkout of the repository's files, with no
vps.env and no .ops/. A second dockerd with its own data root would also need the stand-in images loaded into it
and its own bridge and iptables rules beside the first engine's on this shared host; what the data root adds
to the proof (no volume, container or network of the project) is asserted instead (docs/BACKUPS.md).

First a fresh vps.env (`ops secrets init`) over the old backups: recover refuses naming the keys, creating
nothing. Then `ops recover --identity -` with the identity on stdin and only the bucket in the environment:
every table identical (row count and checksum per table), both collections' points identical, the volume's
files, every ref of the repository, the .ops/ files, vps.env byte for byte (mode 600); n8n's credential
decrypts with the restored key; the started services pass `ops health`. And `ops secrets init` in another
checkout of the same compose project refuses: the engine holds its data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ops.backup.context import postgres_access
from ops.backup.sources.postgres import databases, fingerprints
from ops.envfile import read_env_file
from ops.local.processes import GcsEmulatorServer
from ops.secrets import init_secrets
from tests.conftest import PROJECT_FILES, REPO
from tests.stack.conftest import StackProject, new_stack_project

pytestmark = pytest.mark.stack
OPS = (sys.executable, "-m", "ops.cli")
SERVICES = ("postgres", "redis", "qdrant", "litellm")  # n8n has no image here: its credential is decrypted below
CREDENTIAL = {"apiKey": "sk-provider-secret-123", "url": "https://api.example.org"}
GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@example.org")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def _key_iv(password: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with MD5, as n8n derives its AES key and IV (source: n8n-io/n8n
    packages/core/src/encryption/cipher.ts, getKeyAndIv: CryptoJS-compatible)."""
    h1 = hashlib.md5(password + salt).digest()
    h2 = hashlib.md5(h1 + password + salt).digest()
    return h1 + h2, hashlib.md5(h2 + password + salt).digest()


def n8n_encrypt(data: dict[str, str], key: str) -> str:
    """Encrypt as n8n's Cipher.encrypt: base64("Salted__" + 8-byte salt + AES-256-CBC(JSON))."""
    salt = os.urandom(8)
    aes_key, iv = _key_iv(key.encode(), salt)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(data).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    return base64.b64encode(b"Salted__" + salt + encryptor.update(plain) + encryptor.finalize()).decode()


def n8n_decrypt(text: str, key: str) -> dict[str, str]:
    """Decrypt as n8n's Cipher.decrypt; a wrong key fails the padding (ValueError) or the JSON."""
    raw = base64.b64decode(text)
    aes_key, iv = _key_iv(key.encode(), raw[8:16])
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    result: dict[str, str] = json.loads(unpadder.update(padded) + unpadder.finalize())
    return result


@dataclass
class Scene:
    project: StackProject
    identity: Path
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    env_before: bytes = b""
    refused: subprocess.CompletedProcess[str] | None = None
    refused_leftovers: list[str] = field(default_factory=list)
    recovered: subprocess.CompletedProcess[str] | None = None


def state_of(project: StackProject) -> dict[str, Any]:
    """Every table's fingerprint, every collection's points, the volume's files, the repository's refs, .ops/'s files."""
    settings = project.settings
    pg = postgres_access(settings)
    env = read_env_file(project.dir / "vps.env")
    qdrant = httpx.Client(base_url=env["OPS_QDRANT_URL"], headers={"api-key": env["QDRANT_API_KEY"]}, timeout=30)
    names = sorted(c["name"] for c in qdrant.get("/collections").json()["result"]["collections"])
    volume = docker("run", "--rm", "-v", f"{project.name}_n8n-data:/v:ro", "--entrypoint", "sh", env["OPS_BACKUP_HELPER_IMAGE"],
                    "-c", "cd /v && find . -type f | sort | xargs sha256sum")  # fmt: skip
    refs = subprocess.run(["git", "-C", str(project.dir / "truth"), "for-each-ref"], capture_output=True, text=True).stdout
    ops_dir = project.dir / ".ops"
    return {
        "tables": {db: fingerprints(pg, db) for db in databases(pg)},
        "collections": {name: qdrant.get(f"/collections/{name}/points").json() for name in names},
        "volume": volume,
        "refs": refs,
        "ops": sorted(str(p.relative_to(ops_dir)) for p in ops_dir.rglob("*") if p.is_file()) if ops_dir.exists() else [],
    }


def seed(project: StackProject, identity: Path, gcs: GcsEmulatorServer, images: dict[str, str]) -> None:
    """Put data in every service and back it up (daily and weekly), encrypted to identity's recipient."""
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], capture_output=True, text=True, check=True).stdout.strip()
    with (project.dir / "vps.env").open("a") as handle:
        handle.write(
            f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT={gcs.url}\nOPS_BACKUP_PREFIX={project.name}\n"
            f"OPS_BACKUP_HELPER_IMAGE={images['postgres']}\nOPS_BACKUP_AGE_RECIPIENTS={recipient}\n"
        )
    env = read_env_file(project.dir / "vps.env")
    project.compose("run", "--rm", "-T", "postgres-init")  # the n8n and litellm databases, owned by their roles
    project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "qdrant")
    secret = n8n_encrypt(CREDENTIAL, env["N8N_ENCRYPTION_KEY"])
    rows = "SELECT g, 'w' || g FROM generate_series(1, 300) g"
    spend = "SELECT g, g / 7.0 FROM generate_series(1, 500) g"
    sql = {
        "n8n": "CREATE TABLE credentials_entity (id varchar(36) PRIMARY KEY, name text, type text, data text);"
        f"INSERT INTO credentials_entity VALUES ('c1', 'provider', 'httpHeaderAuth', '{secret}');"
        f"CREATE TABLE workflow_entity (id int, name text); INSERT INTO workflow_entity {rows};"
        "ALTER TABLE credentials_entity OWNER TO n8n; ALTER TABLE workflow_entity OWNER TO n8n;",
        "litellm": f'CREATE TABLE "LiteLLM_SpendLogs" (id int, spend numeric); INSERT INTO "LiteLLM_SpendLogs" {spend};'
        'ALTER TABLE "LiteLLM_SpendLogs" OWNER TO litellm;',
        "postgres": "CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'kept');",
    }
    for database, statements in sql.items():
        psql = ("psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database, "-c", statements)
        project.compose("exec", "-T", "postgres", *psql)
    qdrant = httpx.Client(base_url=env["OPS_QDRANT_URL"], headers={"api-key": env["QDRANT_API_KEY"]}, timeout=30)
    docs = [{"id": i, "vector": [i / 3, 0.1], "payload": {"title": f"doc {i}"}} for i in range(40)]
    assert qdrant.put("/collections/docs/points", json={"points": docs}).status_code == 200
    changed = [{"id": 7, "vector": [0.7, 0.7], "payload": {"n": "changed after the seed"}}]
    assert qdrant.put("/collections/memories/points", json={"points": changed}).status_code == 200
    volume = f"{project.name}_n8n-data"
    docker("volume", "create", "--label", f"com.docker.compose.project={project.name}",
           "--label", "com.docker.compose.volume=n8n-data", volume)  # fmt: skip
    settings_file = json.dumps({"encryptionKey": env["N8N_ENCRYPTION_KEY"]})  # n8n's own file, as n8n writes it
    files = f"echo '{settings_file}' > /v/config && mkdir /v/nodes && echo custom > /v/nodes/a.js && chown -R 1000:1000 /v"
    docker("run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", images["postgres"], "-c", files)
    truth = project.dir / "truth"
    subprocess.run(["git", "init", "-q", "-b", "main", str(truth)], check=True)
    for message in ("first", "second"):
        (truth / "log.md").write_text(message)
        subprocess.run(["git", "-C", str(truth), "add", "log.md"], check=True)
        subprocess.run([*GIT, "-C", str(truth), "commit", "-qm", message], check=True)
    subprocess.run(["git", "-C", str(truth), "branch", "change/cr-1", "HEAD~1"], check=True)
    subprocess.run(["git", "-C", str(truth), "tag", "v1"], check=True)
    ops_dir = project.dir / ".ops"
    for name, text in {
        "changes/cr-1.json": '{"id": "cr-1"}',
        "snapshots/20261124T010000Z-slice04-apply/state.json": "{}",
        "snapshots/20261124T020000Z-slice05-apply.partial/state.json": "{}",  # unfinished: not state
        "events/observer.lock": "",
    }.items():
        (ops_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (ops_dir / name).write_text(text)
    where = ["--project-dir", str(project.dir)]
    for schedule in ("daily", "weekly"):
        run = subprocess.run([*OPS, "backup", "run", "--schedule", schedule, "--json", *where], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


def wipe(project: StackProject) -> None:
    """The disk is lost: the project's containers, volumes, networks and directory go; a fresh checkout comes."""
    project.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")
    subprocess.run(["docker", "volume", "rm", "-f", f"{project.name}_n8n-data"], capture_output=True)
    standin = (project.dir / "compose.standin.yml").read_text()
    shutil.rmtree(project.dir)
    project.dir.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, project.dir / name)
    (project.dir / "compose.standin.yml").write_text(standin)  # the test's stand-ins: part of this "checkout"


def leftovers(project: StackProject) -> list[str]:
    label = f"label=com.docker.compose.project={project.name}"
    return [
        *docker("ps", "-aq", "--filter", label).split(),
        *docker("volume", "ls", "-q", "--filter", label).split(),
        *docker("network", "ls", "-q", "--filter", label).split(),
    ]


@pytest.fixture(scope="module")
def scene(images: dict[str, str], gcs: GcsEmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    folder = tmp_path_factory.mktemp("recover")
    identity = folder / "backup.key"  # "your laptop": never in the project
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    stack = cast(Generator[StackProject, None, None], new_stack_project(images, folder))  # closed: its teardown
    project = next(stack)
    try:
        scene = Scene(project, identity)
        seed(project, identity, gcs, images)
        scene.before = state_of(project)
        scene.env_before = (project.dir / "vps.env").read_bytes()
        bucket_env = {k: v for k, v in read_env_file(project.dir / "vps.env").items() if k.startswith("OPS_BACKUP_")}
        bucket_env.pop("OPS_BACKUP_HELPER_IMAGE")
        wipe(project)
        assert leftovers(project) == []  # as on a new VM: nothing of the project on the engine
        assert not (project.dir / "vps.env").exists() and not (project.dir / ".ops").exists()
        run_env = {**os.environ, **{k: v for k, v in bucket_env.items() if k != "OPS_BACKUP_AGE_RECIPIENTS"}}
        where = ["--project-dir", str(project.dir)]
        services = [arg for name in SERVICES for arg in ("--service", name)]

        # a fresh vps.env (secrets init on the new host) over the old backups
        init_secrets(project.dir / "vps.env.example", project.dir / "vps.env")
        scene.refused = subprocess.run([*OPS, "recover", "--identity", str(identity), "--yes", *services, *where],
                                       capture_output=True, text=True, env=run_env)  # fmt: skip
        scene.refused_leftovers = leftovers(project)
        (project.dir / "vps.env").unlink()

        scene.recovered = subprocess.run(
            [*OPS, "recover", "--identity", "-", "--yes", "--json", *services, *where],
            input=identity.read_text(), capture_output=True, text=True, env=run_env, timeout=900,
        )  # fmt: skip
        if scene.recovered.returncode == 0:
            scene.after = state_of(project)
        yield scene
    finally:
        stack.close()  # compose down --volumes of the recovered project
        label = f"label=com.docker.compose.project={project.name}"  # and whatever a failed recover left
        removals = {
            ("ps", "-aq"): ("rm", "-f"),
            ("volume", "ls", "-q"): ("volume", "rm", "-f"),
            ("network", "ls", "-q"): ("network", "rm"),
        }
        for listing, remove in removals.items():
            names = subprocess.run(["docker", *listing, "--filter", label], capture_output=True, text=True).stdout.split()
            if names:
                subprocess.run(["docker", *remove, *names], capture_output=True)


def test_a_fresh_key_over_the_old_backups_is_refused_naming_the_keys_and_nothing_is_created(scene: Scene) -> None:
    assert scene.refused is not None
    assert scene.refused.returncode == 2, scene.refused.stdout + scene.refused.stderr
    error = scene.refused.stderr
    assert "N8N_ENCRYPTION_KEY, LITELLM_SALT_KEY, LANGFUSE_ENCRYPTION_KEY in vps.env are not the keys" in error, error
    assert "Traceback" not in error
    assert scene.refused_leftovers == []


def test_recover_brings_back_every_table_collection_volume_repository_and_state(scene: Scene) -> None:
    assert scene.recovered is not None
    assert scene.recovered.returncode == 0, scene.recovered.stderr[-4000:]
    before, after = scene.before, scene.after
    assert set(before["tables"]) >= {"postgres", "n8n", "litellm"}
    assert after["tables"].keys() == before["tables"].keys()
    assert after["tables"] == before["tables"]  # every table of every database: row count and checksum
    assert "public.ops_key_guard" in after["tables"]["postgres"]  # the keys' fingerprints travel with the data
    assert after["tables"]["n8n"]["public.workflow_entity"][0] == "300"
    assert after["collections"] == before["collections"] and set(after["collections"]) == {"docs", "memories"}
    assert after["volume"] == before["volume"] and "./config" in after["volume"] and "./nodes/a.js" in after["volume"]
    assert after["refs"] == before["refs"] and "refs/tags/v1" in after["refs"] and "refs/heads/change/cr-1" in after["refs"]
    assert after["ops"] == ["changes/cr-1.json", "snapshots/20261124T010000Z-slice04-apply/state.json"]
    env_file = scene.project.dir / "vps.env"
    assert env_file.read_bytes() == scene.env_before
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_n8ns_stored_credential_still_decrypts_with_the_restored_key(scene: Scene) -> None:
    assert scene.recovered is not None and scene.recovered.returncode == 0
    project = scene.project
    data = project.compose("exec", "-T", "postgres", "psql", "-X", "-At", "-U", "postgres", "-d", "n8n", "-c",
                           "SELECT data FROM credentials_entity WHERE id = 'c1'").stdout.strip()  # fmt: skip
    key = read_env_file(project.dir / "vps.env")["N8N_ENCRYPTION_KEY"]
    assert n8n_decrypt(data, key) == CREDENTIAL
    with pytest.raises(ValueError):  # what a fresh key would have met
        n8n_decrypt(data, "0" * 64)


def test_the_stack_comes_up_healthy_and_each_phase_is_timed(scene: Scene) -> None:
    assert scene.recovered is not None and scene.recovered.returncode == 0
    report = json.loads(scene.recovered.stdout)
    phases = [p["name"] for p in report["phases"]]
    assert phases == ["choose the backup", "vps.env", "volumes", "postgres", "qdrant", "git", "state", "stack up", "health"]
    assert all(p["seconds"] >= 0 for p in report["phases"]) and report["seconds"] > 0
    assert report["volumes_backup"].endswith("-weekly") and report["backup"].endswith("-daily")
    health = next(p for p in report["phases"] if p["name"] == "health")
    assert "postgres" in health["detail"][0] and "qdrant" in health["detail"][0] and "litellm" in health["detail"][0]
    print(f"\nrecovery: {report['seconds']:.1f} s; " + ", ".join(f"{p['name']} {p['seconds']:.1f}" for p in report["phases"]))


def test_secrets_init_on_a_host_holding_the_stacks_data_refuses(scene: Scene, tmp_path: Path) -> None:
    assert scene.recovered is not None and scene.recovered.returncode == 0
    name = scene.project.name
    checkout = tmp_path / "checkout"  # a second checkout of the same compose project, without vps.env
    checkout.mkdir()
    for file in PROJECT_FILES:
        (shutil.copytree if (REPO / file).is_dir() else shutil.copy2)(REPO / file, checkout / file)
    example = checkout / "vps.env.example"
    example.write_text(re.sub(r"^COMPOSE_PROJECT_NAME=.*$", f"COMPOSE_PROJECT_NAME={name}", example.read_text(), flags=re.M))

    init = subprocess.run([*OPS, "secrets", "init", "--project-dir", str(checkout)], capture_output=True, text=True)

    assert init.returncode == 2, init.stdout + init.stderr
    assert f"this host already holds the stack's data (volumes {name}_n8n-data, {name}_postgres-data)" in init.stderr
    assert "N8N_ENCRYPTION_KEY, LITELLM_SALT_KEY, LANGFUSE_ENCRYPTION_KEY" in init.stderr
    assert not (checkout / "vps.env").exists()
