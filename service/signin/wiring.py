"""The sign-in use cases and their collaborators, built together once (by `create_app`, and by
tests that run the use cases without HTTP), so each gets the same keys, clock and codec."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service import crypto
from service.crypto import Keys
from service.db import Database
from service.delivery.mail import Mailer
from service.settings import Settings
from service.signin.access import AccessTokens
from service.signin.account import Account
from service.signin.address import AddressChange
from service.signin.bindings import Bindings
from service.signin.flows import Login
from service.signin.links import LinkCodec
from service.signin.notices import DeviceNotices
from service.signin.refresh import Refresher
from service.signin.steps import SecondFactor, SecondFactors, SecondStep
from service.signin.view import CodePage
from service.tokens import Keyring


@dataclass(frozen=True, kw_only=True)
class Signin:
    """Every sign-in use case, ready to call."""

    login: Login
    refresher: Refresher
    steps: SecondStep
    factors: SecondFactors
    code_page: CodePage
    bindings: Bindings
    access: AccessTokens
    notices: DeviceNotices
    account: Account
    address: AddressChange


def build_signin(
    settings: Settings,
    database: Database,
    mailer: Mailer,
    keyring: Keyring,
    clock: Callable[[], float],
    *,
    new_code: Callable[[], str] = crypto.new_code,
    second_factors: Iterable[SecondFactor] = (),
    forget: Callable[..., None] = lambda *session_ids: None,
) -> Signin:
    """The use cases over one database, mailer and keyring. `forget` drops revoked sessions
    from /auth/check's cache (Sessions.forget)."""
    keys = Keys.from_secret(settings.secret_key)
    bindings = Bindings(keys, settings.signin.code_ttl)
    access = AccessTokens(settings, keyring)
    factors = SecondFactors(second_factors)
    notices = DeviceNotices(settings, database, mailer, clock, forget=forget)
    login = Login(
        settings,
        database,
        mailer,
        clock,
        keys=keys,
        links=LinkCodec(keys, settings.signin.code_ttl),
        bindings=bindings,
        access=access,
        new_code=new_code,
        notices=notices,
    )
    return Signin(
        login=login,
        refresher=Refresher(settings, database, access, clock),
        steps=SecondStep(
            settings,
            database,
            factors,
            bindings=bindings,
            access=access,
            clock=clock,
            notices=notices,
        ),
        factors=factors,
        code_page=CodePage(settings, database, clock),
        bindings=bindings,
        access=access,
        notices=notices,
        account=Account(database, clock, forget=forget),
        address=AddressChange(settings, database, mailer, clock, new_code=new_code),
    )
