"""Run a validator program with a generated env file; shared by the rules that call real tools."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from ops.envfile import format_env_value


def run_with_env(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run argv in cwd with env added to the process environment and written to $ENV_FILE.

    Return (exit code, combined output). The temporary env file is mode 600
    and removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="ops-doctor-") as tmp:
        env_file = Path(tmp) / "check.env"
        env_file.write_text("".join(f"{k}={format_env_value(v)}\n" for k, v in env.items()))
        os.chmod(env_file, 0o600)
        argv = [a.replace("$ENV_FILE", str(env_file)) for a in argv]
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env={**os.environ, **env, "HOME": tmp},
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return 124, f"{argv[0]} did not finish in {timeout:.0f} s"
        return proc.returncode, (proc.stdout + proc.stderr).strip()
