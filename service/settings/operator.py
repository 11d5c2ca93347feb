"""The operator's side (docs/design.md §14): how long audit events are kept, how webhooks go."""

from __future__ import annotations

from dataclasses import dataclass

from service.settings.fields import env, seconds, whole

DAY = 86400


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    """Audit retention and webhook delivery."""

    audit_retention: int = env("AUDIT_RETENTION", whole, 365 * DAY)
    # One attempt's bound (connect, send, read the answer): a stalled receiver holds one
    # delivery slot this long, never a sign-in.
    webhook_timeout: float = env("WEBHOOK_TIMEOUT", seconds, 10.0)
    # Retries back off exponentially from this delay (5 s, 10 s, 20 s … capped at an hour)
    # until WEBHOOK_RETRY_FOR seconds after the event; then the message is given up.
    webhook_retry_base: int = env("WEBHOOK_RETRY_BASE", whole, 5)
    webhook_retry_for: int = env("WEBHOOK_RETRY_FOR", whole, DAY)
    # How often each instance looks for due messages.
    webhook_poll_interval: float = env("WEBHOOK_POLL_INTERVAL", seconds, 1.0)

    def validate(self) -> list[str]:
        """The problems of this section, each naming the variable to set."""
        problems = []
        if self.audit_retention < DAY:
            problems.append("AUDIT_RETENTION must be at least 86400 seconds (a day)")
        if not 0 < self.webhook_timeout <= 60:
            problems.append("WEBHOOK_TIMEOUT must be more than 0 and at most 60 seconds")
        if self.webhook_retry_base < 1:
            problems.append("WEBHOOK_RETRY_BASE must be at least 1 second")
        if self.webhook_poll_interval <= 0:
            problems.append("WEBHOOK_POLL_INTERVAL must be more than 0 seconds")
        return problems
