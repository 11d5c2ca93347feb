"""The magic-link codec: the token a mailed link carries, and the hash the store compares.

A token is (flow id, 256-bit secret), signed and timestamped; only a keyed hash of the secret
is stored, so a database read cannot make a working link.
"""

from __future__ import annotations

import logging

from service import crypto
from service.crypto import Keys, LinkSigner, LinkTokenError, LinkTokenExpiredError
from service.errors import FlowExpiredError, InvalidLinkError

# The flows' logger, kept from before the codec had a module: its log lines keep their name.
log = logging.getLogger("latch.flows")


class LinkCodec:
    """Makes and reads link tokens; a token is good for `max_age` seconds (CODE_TTL)."""

    def __init__(self, keys: Keys, max_age: int) -> None:
        self._signer = LinkSigner(keys.signing)
        self._hash_key = keys.link
        self.max_age = max_age

    def new(self, flow_id: str) -> tuple[str, str]:
        """A fresh (token, secret hash) for a flow."""
        secret = crypto.new_secret()
        return self.dumps(flow_id, secret), self.hash(flow_id, secret)

    def dumps(self, flow_id: str, secret: str) -> str:
        """The token that goes into the mailed link."""
        return self._signer.dumps(flow_id, secret)

    def loads(self, token: str, max_age: int) -> tuple[str, str]:
        """(flow id, secret) of a token, or LinkTokenError / LinkTokenExpiredError."""
        return self._signer.loads(token, max_age=max_age)

    def hash(self, flow_id: str, secret: str) -> str:
        """What the store keeps of a link's secret."""
        return crypto.keyed_hash(self._hash_key, flow_id, secret)

    def read(self, token: str) -> tuple[str, str]:
        """(flow id, secret hash) of a genuine, unexpired link token."""
        try:
            flow_id, secret = self.loads(token, max_age=self.max_age)
        except LinkTokenExpiredError as e:
            raise FlowExpiredError("This sign-in link has expired. Please start again.") from e
        except LinkTokenError as e:
            # The precise reason is for operators only: every forgery reads the same outside.
            log.debug("link refused: %s", e)
            raise InvalidLinkError() from e
        return flow_id, self.hash(flow_id, secret)
