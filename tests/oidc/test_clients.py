"""`python -m service clients …` (docs/design.md §13): the secret is shown once and stored only
hashed, redirect URIs are checked when registered, and the commands do what they say."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from service.oidc.clients import ClientError, check_redirect_uri
from tests.support.oidc import add_client_cli, clients_cli

URL = "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/cb",  # plain http off loopback
        "https://app.example.com/cb#frag",
        "https://user@app.example.com/cb",
        "/relative/cb",
        "https://app.example.com/c b",
        "javascript:alert(1)",
    ],
)
def test_unfit_redirect_uris_are_refused(uri: str) -> None:
    with pytest.raises(ClientError):
        check_redirect_uri(uri)


def test_fit_redirect_uris_are_kept_exactly() -> None:
    for uri in ("https://app.example.com/cb?x=1", "http://localhost:3000/cb", "http://[::1]/cb"):
        assert check_redirect_uri(uri) == uri


def test_clients_commands_show_the_secret_once_and_store_only_its_hash(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    added = add_client_cli(data, URL, "Grafana", "--redirect-uri", "https://g.example.com/cb")
    secret, client_id = added["client_secret"], added["client_id"]
    assert len(secret) >= 43 and added["type"] == "confidential"
    database = sqlite3.connect(data / "latch.db")
    dump = "\n".join(database.iterdump())
    database.close()
    assert secret not in dump and client_id in dump

    listed = json.loads(clients_cli(data, URL, "list", "--json").stdout)
    assert [c["client_id"] for c in listed] == [client_id]
    shown = clients_cli(data, URL, "show", client_id, "--json")
    assert "client_secret" not in json.loads(shown.stdout)

    rotated = json.loads(clients_cli(data, URL, "rotate-secret", client_id, "--json").stdout)
    assert rotated["client_secret"] != secret

    public = add_client_cli(data, URL, "SPA", "--redirect-uri", "http://localhost/cb", "--public")
    assert public["client_secret"] is None and public["type"] == "public"
    assert clients_cli(data, URL, "rotate-secret", public["client_id"]).returncode == 1

    assert clients_cli(data, URL, "remove", client_id).returncode == 0
    assert clients_cli(data, URL, "show", client_id).returncode == 1


def test_clients_add_refuses_a_bad_redirect_uri(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = clients_cli(data, URL, "add", "App", "--redirect-uri", "http://app.example.com/cb")
    assert done.returncode == 1 and "https" in done.stderr
