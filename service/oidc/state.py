"""The provider's collaborators, built once by `attach` and read by its handlers."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from service.oidc.exchange import Tokens
from service.oidc.provider import Provider


@dataclass(frozen=True, kw_only=True)
class OidcState:
    """What the provider's handlers use."""

    provider: Provider
    tokens: Tokens


def oidc_state(connection: HTTPConnection) -> OidcState:
    """The provider state of the app serving this request."""
    state: OidcState = connection.app.state.latch_oidc
    return state


def attach_oidc(app: object, state: OidcState) -> None:
    """Store the state where `oidc_state` finds it."""
    app.state.latch_oidc = state  # type: ignore[attr-defined]
