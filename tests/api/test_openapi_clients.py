"""Clients generated from /openapi.json by the generators people use work and type-check.

openapi-python-client (Python), openapi-typescript with openapi-fetch and @hey-api/openapi-ts
(TypeScript, from tests/node) run on the document a live Latch serves; their output goes to a
temp dir. The Python client then signs in (the code from an SMTP sink), refreshes and logs out
against Latch under uvicorn over TCP, calling exactly as its generated signatures allow: if the
document hid a body or a media type a call needs, that call fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_ENV
from tests.support.process import CHECKOUT, LatchProcess
from tests.support.smtp import SmtpSink, text_part

NODE_BIN = CHECKOUT / "tests" / "node" / "node_modules" / ".bin"
VENV_BIN = Path(sys.executable).parent
PACKAGE = "latch_client"
EMAIL = "generated@example.com"


class Live:
    def __init__(self, latch: LatchProcess, sink: SmtpSink, spec: Path) -> None:
        self.latch, self.sink, self.spec = latch, sink, spec


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("openapi")
    with SmtpSink() as sink:
        env = {
            **TEST_ENV,
            "DATA_DIR": str(tmp / "data"),
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_TLS": "none",
        }
        with LatchProcess(env, tmp / "latch") as latch:
            spec = tmp / "openapi.json"
            spec.write_bytes(httpx.get(f"{latch.url}/openapi.json", timeout=10).content)
            yield Live(latch, sink, spec)


def _run(args: list[str], cwd: Path, **env: str) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{args[0]} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def python_client(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """openapi-python-client's package, importable for the duration of the module."""
    out = tmp_path_factory.mktemp("python-client")
    # No post-hooks: they run whatever ruff is on PATH, and ruff 0.17's default PYI036 fix
    # retypes the client's `__exit__(*args: Any)` as `object`, which mypy then refuses when it
    # is passed on to httpx. That is the generator's template meeting a newer ruff, not the
    # document; README "The JSON API" tells users the same.
    config = out / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))
    _run(
        [
            str(VENV_BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(live.spec),
            "--output-path",
            str(out / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        out,
    )
    sys.path.insert(0, str(out))
    try:
        yield out
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_generated_python_client_passes_mypy_strict(python_client: Path) -> None:
    (python_client / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    _run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(python_client / ".mypy"), PACKAGE],
        python_client,
    )


def _api(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.default.{name}")


def _mailed_code(sink: SmtpSink, index: int) -> str:
    found = re.search(r"\b(\d{3}) ?(\d{3})\b", text_part(sink.wait_for(EMAIL, index=index)))
    assert found
    return "".join(found.groups())


def test_generated_python_client_signs_in_refreshes_and_logs_out(
    live: Live, python_client: Path
) -> None:
    client_module = importlib.import_module(PACKAGE)
    models = importlib.import_module(f"{PACKAGE}.models")
    with client_module.Client(base_url=live.latch.url, raise_on_unexpected_status=True) as api:
        started = _api("start_signin").sync(client=api, body=models.StartRequest(email=EMAIL))
        assert isinstance(started, models.Started), started
        # No flow_id: the latch_flow cookie the start set is the credential (flowCookie).
        signed_in = _api("verify_code").sync(
            client=api, body=models.VerifyRequest(code=_mailed_code(live.sink, 0))
        )
        assert isinstance(signed_in, models.SignedIn), signed_in
        assert signed_in.user.email == EMAIL
        jar: Any = api.get_httpx_client().cookies
        first_jwt = jar["latch_session"]

        refreshed = _api("refresh_session").sync_detailed(client=api)
        assert refreshed.status_code == 200, refreshed.content
        assert isinstance(refreshed.parsed, models.SignedIn)
        assert refreshed.parsed.session.id == signed_in.session.id
        assert jar["latch_session"] != first_jwt

        who = _api("get_session").sync(client=api)
        assert isinstance(who, models.SignedIn) and who.user.email == EMAIL

        out = _api("logout").sync_detailed(client=api)
        assert out.status_code == 204, out.content
        after = _api("get_session").sync_detailed(client=api)
        assert after.status_code == 401
        assert isinstance(after.parsed, models.LatchError)
        assert after.headers["www-authenticate"].startswith("Bearer ")


# openapi-fetch typed by openapi-typescript's output, and hey-api's SDK, used as a browser app
# would: the calls must compile under --strict with no body for refresh and logout.
USAGE = """
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";
import { getSession, logout, refreshSession, startSignin, verifyCode } from "./hey/index.js";

export async function withOpenapiFetch(base: string): Promise<string> {
  const api = createClient<paths>({ baseUrl: base, credentials: "include" });
  const started = await api.POST("/api/start", { body: { email: "a@example.com" } });
  await api.POST("/api/verify", { body: { code: "123456", flow_id: started.data?.flow_id } });
  const refreshed = await api.POST("/api/refresh");
  await api.POST("/api/logout");
  await api.POST("/api/logout", { body: { all: true } });
  const failed = await api.GET("/api/session");
  return (refreshed.data?.user.email ?? "") + (failed.error?.error.code ?? "");
}

export async function withHeyApi(): Promise<string> {
  const started = await startSignin({ body: { email: "a@example.com" } });
  await verifyCode({ body: { code: "123456", flow_id: started.data?.flow_id } });
  const refreshed = await refreshSession();
  await logout();
  const who = await getSession();
  return (refreshed.data?.user.email ?? "") + (who.data?.session.id ?? "");
}
"""

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "es2022",
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "lib": ["es2022", "dom", "dom.iterable"],
        "types": [],
    },
    "include": ["*.ts", "hey/**/*.ts"],
}


def test_typescript_clients_of_both_generators_pass_tsc_strict(live: Live, tmp_path: Path) -> None:
    assert (NODE_BIN / "tsc").exists(), "run: npm ci --prefix tests/node (make test does)"
    os.symlink(NODE_BIN.parent, tmp_path / "node_modules")
    _run([str(NODE_BIN / "openapi-typescript"), str(live.spec), "-o", "schema.d.ts"], tmp_path)
    _run([str(NODE_BIN / "openapi-ts"), "-i", str(live.spec), "-o", "hey"], tmp_path)
    (tmp_path / "usage.ts").write_text(USAGE)
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    _run([str(NODE_BIN / "tsc"), "-p", "tsconfig.json"], tmp_path)
