"""The `keys` CLI and the published JWKS of a running Latch."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.support.server import Latch

JWKS = "/.well-known/jwks.json"


def keys_cli(latch: Latch, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATA_DIR": str(latch.settings.storage.data_dir),
        "PUBLIC_URL": latch.url,
    }
    return subprocess.run(
        [sys.executable, "-m", "service", "keys", *args],
        env=env,
        cwd=latch.settings.storage.data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def published(latch: Latch) -> set[str]:
    return {k["kid"] for k in httpx.get(latch.url + JWKS).json()["keys"]}
