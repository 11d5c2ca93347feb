"""What the browser's sign-in cookies hold, as signed values (the cookies themselves are set by
service/web/cookies.py): the `latch_flow` cookie binds a flow to the browser that started it,
the `latch_signin` cookie names a pending sign-in and its flow (docs/design.md §11)."""

from __future__ import annotations

from service.crypto import Keys, ValueSigner
from service.signin.opening import SIGNIN_TTL


class Bindings:
    """Signs and reads the values of the flow and sign-in cookies."""

    def __init__(self, keys: Keys, code_ttl: int) -> None:
        self._flows = ValueSigner(keys.signing, "latch.flow")
        # A salt of its own: a latch_flow value can never pass for a latch_signin one.
        self._signins = ValueSigner(keys.signing, "latch.signin")
        self._flow_max_age = code_ttl + 60

    def flow_cookie(self, flow_id: str) -> str:
        """The `latch_flow` value binding `flow_id` to this browser."""
        return self._flows.dumps(flow_id)

    def flow_of(self, value: str | None) -> str | None:
        """The flow id bound to this browser, if its cookie is genuine and young."""
        if not value:
            return None
        return self._flows.loads(value, max_age=self._flow_max_age)

    def signin_cookie(self, step_id: str, flow_id: str) -> str:
        """The `latch_signin` value naming a pending sign-in and the flow it came from."""
        return self._signins.dumps(f"{step_id}.{flow_id}")

    def signin_of(self, value: str | None) -> tuple[str, str] | None:
        """(pending sign-in id, flow id) from a genuine `latch_signin` cookie under 5 minutes."""
        if not value:
            return None
        bound = self._signins.loads(value, max_age=SIGNIN_TTL)
        step_id, dot, flow_id = (bound or "").partition(".")
        return (step_id, flow_id) if dot and step_id and flow_id else None
