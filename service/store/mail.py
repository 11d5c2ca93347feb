"""Mail status on a flow: claimed, sent, retried, failed (which ends the flow)."""

from __future__ import annotations

from service.db import Q, UseCase, replayable
from service.store.flows import get_flow
from service.store.users import find_user


@replayable
def claim_mail(flow_id: str, seq: int, *, check_user: bool, now: int) -> UseCase[str]:
    """Whether a queued mail should go out: 'send', 'suppress' (recorded) or 'skip' (stale)."""
    row = yield from get_flow(flow_id)
    if (
        row is None
        or row["mail_seq"] != seq
        or row["consumed_at"] is not None
        or row["expires_at"] <= now
    ):
        return "skip"
    if check_user and (yield from find_user(row["email_key"])) is None:
        yield Q(
            "UPDATE login_flows SET mail_status = 'suppressed' WHERE id = :id AND mail_seq = :s",
            {"id": flow_id, "s": seq},
        )
        return "suppress"
    return "send"


@replayable
def mark_mail(flow_id: str, seq: int, *, status: str, error: str | None) -> UseCase[None]:
    """Record a send ('sent') or a transient error (status 'queued') for the current mail."""
    yield Q(
        "UPDATE login_flows SET mail_status = :st, mail_error = :e"
        " WHERE id = :id AND mail_seq = :s AND mail_status = 'queued'",
        {"st": status, "e": error, "id": flow_id, "s": seq},
    )


@replayable
def fail_mail(flow_id: str, seq: int, *, error: str, now: int) -> UseCase[None]:
    """A mail that finally failed kills its flow: no valid code is left that nobody received."""
    yield Q(
        "UPDATE login_flows SET mail_status = 'failed', mail_error = :e, consumed_at = :now,"
        " outcome = 'mail_failed' WHERE id = :id AND mail_seq = :s AND consumed_at IS NULL",
        {"e": error, "id": flow_id, "s": seq, "now": now},
    )
