"""The one typed app state: every collaborator `create_app` builds, read by handlers through
`app_state(request)` instead of untyped `request.app.state.X` lookups."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from service.accounts.operator import Operator
from service.db import Database
from service.delivery.mail import Mailer
from service.delivery.notices import Notices
from service.settings import Settings
from service.signin.account import Account
from service.signin.address import AddressChange
from service.signin.bindings import Bindings
from service.signin.enrolment import EnrolStep
from service.signin.factors import AccountFactors
from service.signin.flows import Login
from service.signin.notices import DeviceNotices
from service.signin.passkeys import Passkeys
from service.signin.refresh import Refresher
from service.signin.sessions import Sessions
from service.signin.steps import SecondFactors, SecondStep
from service.signin.view import CodePage
from service.tokens import Keyring
from service.web.metrics import Metrics


@dataclass(frozen=True, kw_only=True)
class AppState:
    """What a handler may use; built once per app."""

    settings: Settings
    database: Database
    keyring: Keyring
    mailer: Mailer
    login: Login
    refresher: Refresher
    steps: SecondStep
    factors: SecondFactors
    passkeys: Passkeys
    code_page: CodePage
    bindings: Bindings
    sessions: Sessions
    account_factors: AccountFactors
    enrolment: EnrolStep
    notices: Notices
    device_notices: DeviceNotices
    account: Account
    address: AddressChange
    metrics: Metrics
    clock: Callable[[], float]
    operator: Operator
    # Parts other surfaces add to /openapi.json ({"paths", "schemas", "securitySchemes"}).
    openapi_parts: tuple[Mapping[str, Any], ...] = ()


def app_state(connection: HTTPConnection) -> AppState:
    """The app state of the app serving this request."""
    state: AppState = connection.app.state.latch
    return state


def attach_state(app: object, state: AppState) -> None:
    """Store the state where `app_state` finds it (Starlette's `app.state`)."""
    app.state.latch = state  # type: ignore[attr-defined]


def app_state_of(client: object) -> AppState:
    """The app state of a test client's (or any holder's) `app`: for tests and tools."""
    state: AppState = client.app.state.latch  # type: ignore[attr-defined]
    return state
