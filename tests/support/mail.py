"""Helpers of the delivery tests: what the code page says of a flow's mail, and the operator's
own templates (EMAIL_TEMPLATES_DIR) written to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from service.web.state import app_state_of
from tests.support.wait import eventually


def flow_view(client: TestClient, flow_id: str) -> dict[str, Any]:
    """CodePage.view (service/signin/view.py), run on the app's event loop."""
    assert client.portal is not None
    view: dict[str, Any] | None = client.portal.call(app_state_of(client).code_page.view, flow_id)
    assert view is not None
    return view


def wait_mail_status(client: TestClient, flow_id: str, status: str) -> dict[str, Any]:
    """Wait (bounded) until the background sender has recorded `status` on the flow."""
    return eventually(
        lambda: view if (view := flow_view(client, flow_id))["mail_status"] == status else None,
        f"mail_status {status!r} on the flow",
    )


def write_templates(
    directory: Path, *, subject: str, body: str, html: str | None = "<p>{{ code }}</p>\n"
) -> Path:
    """A templates folder with these three templates (`html=None` leaves body.html out)."""
    directory.mkdir()
    (directory / "subject.txt").write_text(subject)
    (directory / "body.txt").write_text(body)
    if html is not None:
        (directory / "body.html").write_text(html)
    return directory
