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
from service.signin.bindings import Bindings
from service.signin.ceremonies import RelyingParty
from service.signin.flows import Login
from service.signin.links import LinkCodec
from service.signin.passkey_step import PasskeyFactor
from service.signin.passkeys import Passkeys
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
    passkeys: Passkeys
    code_page: CodePage
    bindings: Bindings
    access: AccessTokens


def build_signin(
    settings: Settings,
    database: Database,
    mailer: Mailer,
    keyring: Keyring,
    clock: Callable[[], float],
    *,
    new_code: Callable[[], str] = crypto.new_code,
    second_factors: Iterable[SecondFactor] = (),
) -> Signin:
    """The use cases over one database, mailer and keyring."""
    keys = Keys.from_secret(settings.secret_key)
    bindings = Bindings(keys, settings.signin.code_ttl)
    access = AccessTokens(settings, keyring)
    # Passkeys answer second steps beside the factors passed in (when they are on at all).
    passkey_factor = PasskeyFactor(RelyingParty(settings, database, clock), database)
    built_in = [passkey_factor] if settings.passkeys_enabled else []
    factors = SecondFactors([*built_in, *second_factors])
    steps = SecondStep(settings, database, factors, bindings=bindings, access=access, clock=clock)
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
    )
    return Signin(
        login=login,
        refresher=Refresher(settings, database, access, clock),
        steps=steps,
        factors=factors,
        passkeys=Passkeys(
            settings,
            database,
            clock,
            bindings=bindings,
            access=access,
            steps=steps,
            factor=passkey_factor,
        ),
        code_page=CodePage(settings, database, clock),
        bindings=bindings,
        access=access,
    )
