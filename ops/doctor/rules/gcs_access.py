"""On a GCE VM, the service account that Langfuse's blob storage and the backups use can write to GCS.

A VM created with the default access scopes has devstorage.read_only, so every
Langfuse event upload and every backup upload gets a 403 (source: cloud.google.com
compute/docs/access/service-accounts, "Access scopes"). Signed media URLs are made
with the IAM Credentials signBlob API, which needs the cloud-platform (or iam) scope
and iam.serviceAccounts.signBlob on the account (source: googleapis/nodejs-storage
File.getSignedUrl, "sign with IAM when the credentials have no private key").
The scopes are read from the metadata server (source: cloud.google.com compute/docs/
metadata/predefined-metadata-keys, instance/service-accounts/default/scopes); roles
cannot be read there: docs/RUNBOOK.md gives the gcloud commands for both.
"""

from __future__ import annotations

import httpx

from ops.doctor import DoctorContext, Finding

NAME = "gcs-access"
DESCRIPTION = "the VM's service account has the scopes GCS uploads and signed URLs need (read from the metadata server)"
SCOPE = "https://www.googleapis.com/auth/"
WRITE_SCOPES = {SCOPE + "devstorage.read_write", SCOPE + "devstorage.full_control", SCOPE + "cloud-platform"}
SIGN_SCOPES = {SCOPE + "cloud-platform", SCOPE + "iam"}
FIX = 'docs/RUNBOOK.md, "The VM\'s service account" (gcloud compute instances set-service-account --scopes=cloud-platform)'


def _scopes(host: str) -> tuple[str, set[str]] | None:
    """Return (service account e-mail, its scopes) from the metadata server at host, or None when none answers."""
    base = f"http://{host}/computeMetadata/v1/instance/service-accounts/default"
    headers = {"Metadata-Flavor": "Google"}
    try:
        with httpx.Client(timeout=2, headers=headers) as client:
            email = client.get(f"{base}/email")
            scopes = client.get(f"{base}/scopes")
    except httpx.HTTPError:
        return None
    if email.status_code != 200 or scopes.status_code != 200 or email.headers.get("Metadata-Flavor") != "Google":
        return None
    return email.text.strip(), {line.strip() for line in scopes.text.splitlines() if line.strip()}


def check(ctx: DoctorContext) -> list[Finding]:
    env = ctx.settings.effective_env
    langfuse = "langfuse" in ctx.settings.profiles and not env.get("LANGFUSE_GCS_CREDENTIALS", "").strip()
    backups = bool(env.get("OPS_BACKUP_BUCKET", "").strip()) and not env.get("OPS_BACKUP_GCS_CREDENTIALS", "").strip()
    if env.get("OPS_BACKUP_GCS_ENDPOINT", "").strip():
        backups = False  # an emulator (local mode, tests)
    if not (langfuse or backups):
        return []
    users = " and ".join(u for u, on in (("Langfuse's blob storage", langfuse), ("the backups", backups)) if on)
    found = _scopes(env.get("OPS_GCE_METADATA_HOST") or "metadata.google.internal")
    if found is None:
        return [
            Finding(
                NAME,
                "warning",
                f"no GCE metadata server answers: {users} use the VM's service account, whose scopes and roles "
                f"were not checked; see {FIX}",
            )
        ]
    email, scopes = found
    findings = []
    if not scopes & WRITE_SCOPES:
        has = ", ".join(sorted(s.removeprefix(SCOPE) for s in scopes)) or "none"
        findings.append(
            Finding(
                NAME,
                "error",
                f"the VM's service account {email} has no GCS write scope (it has {has}): "
                f"{users} would get 403 on every upload; fix: {FIX}",
            )
        )
    if langfuse and not scopes & SIGN_SCOPES:
        findings.append(
            Finding(
                NAME,
                "error",
                f"the VM's service account {email} lacks the cloud-platform scope: Langfuse cannot sign media URLs "
                f"(iam.serviceAccounts.signBlob); fix: {FIX}",
            )
        )
    return findings
