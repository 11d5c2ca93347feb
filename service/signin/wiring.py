"""The sign-in use cases and their collaborators, built together once (by `create_app`, and by
tests that run the use cases without HTTP), so each gets the same keys, clock and codec."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service import crypto
from service.crypto import Keys
from service.db import Database
from service.delivery.mail import Mailer
from service.delivery.notices import Notices
from service.settings import Settings
from service.signin.access import AccessTokens
from service.signin.account import Account
from service.signin.address import AddressChange
from service.signin.bindings import Bindings
from service.signin.ceremonies import RelyingParty
from service.signin.enrolment import EnrolStep
from service.signin.factors import AccountFactors, StepUpMethod
from service.signin.flows import Login
from service.signin.links import LinkCodec
from service.signin.notices import DeviceNotices
from service.signin.passkey_step import PasskeyFactor
from service.signin.passkeys import Passkeys
from service.signin.recovery import RecoveryCodes
from service.signin.refresh import Refresher
from service.signin.steps import SecondFactor, SecondFactors, SecondStep
from service.signin.totp import Totp
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
    account_factors: AccountFactors
    enrolment: EnrolStep
    notices: Notices
    device_notices: DeviceNotices
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
    """The use cases over one database, mailer and keyring.

    `second_factors` are second-step methods besides this Latch's own authenticator apps and
    recovery codes (docs/design.md §11); one with the same method replaces the built-in one
    (tests bring their own). `forget` drops revoked sessions from /auth/check's cache
    (Sessions.forget)."""
    keys = Keys.from_secret(settings.secret_key)
    bindings = Bindings(keys, settings.signin.code_ttl)
    access = AccessTokens(settings, keyring)
    notices = Notices(settings, mailer)
    device_notices = DeviceNotices(settings, database, mailer, clock, forget=forget)
    totp = Totp(settings, database)
    recovery = RecoveryCodes(settings, database, notices)
    # Passkeys answer second steps beside the factors passed in (when they are on at all).
    passkey_factor = PasskeyFactor(RelyingParty(settings, database, clock), database)
    built_in: list[SecondFactor] = [totp, recovery]
    step_ups: list[StepUpMethod] = []
    if settings.passkeys_enabled:
        built_in.append(passkey_factor)
        step_ups.append(passkey_factor)  # and a step-up, beside the app's code
    factors = SecondFactors([*built_in, *second_factors])
    account_factors = AccountFactors(
        settings, database, access, totp, recovery, notices, clock, step_ups
    )
    steps = SecondStep(
        settings,
        database,
        factors,
        bindings=bindings,
        access=access,
        clock=clock,
        notices=device_notices,
    )
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
        notices=device_notices,
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
            account_factors=account_factors,
        ),
        code_page=CodePage(settings, database, clock),
        bindings=bindings,
        access=access,
        account_factors=account_factors,
        enrolment=EnrolStep(
            settings,
            database,
            account_factors,
            steps,
            bindings=bindings,
            access=access,
            clock=clock,
        ),
        notices=notices,
        device_notices=device_notices,
        account=Account(database, clock, account_factors, forget=forget),
        address=AddressChange(
            settings, database, mailer, clock, account_factors, new_code=new_code
        ),
    )
