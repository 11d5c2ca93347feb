"""The authenticator-app arithmetic against implementations that are not ours: codes from
Debian's oathtool, the QR code read back by Debian's zbarimg; and the sealing of the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import crypto
from service.signin import totp
from tests.support.otp import label_of, oathtool, secret_of, svg_png, zbarimg

NOW = 1_790_000_015  # 15 s into a step: the injected clock, never the wall clock
SECRET = totp.new_secret()


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_oathtool_codes_of_the_step_and_either_neighbour_are_accepted(offset: int) -> None:
    code = oathtool(SECRET, NOW + offset * 30)
    assert totp.matching_step(SECRET, code, NOW, after=-1) == NOW // 30 + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_oathtool_codes_two_steps_away_are_refused(offset: int) -> None:
    code = oathtool(SECRET, NOW + offset * 30)
    assert totp.matching_step(SECRET, code, NOW, after=-1) is None


def test_a_code_for_a_step_at_or_before_the_last_accepted_one_is_refused() -> None:
    code = oathtool(SECRET, NOW)
    step = NOW // 30
    assert totp.matching_step(SECRET, code, NOW, after=step - 1) == step
    assert totp.matching_step(SECRET, code, NOW, after=step) is None  # replay
    earlier = oathtool(SECRET, NOW - 30)
    assert totp.matching_step(SECRET, earlier, NOW, after=step) is None  # older than the last


def test_the_secret_is_160_bits_of_base32_shown_in_groups_of_four() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32 and secret.isalnum() and secret == secret.upper()
    assert totp.grouped(secret) == " ".join(secret[i : i + 4] for i in range(0, 32, 4))
    assert totp.new_secret() != secret


def test_otpauth_uri_names_issuer_and_account_and_survives_odd_names() -> None:
    uri = totp.otpauth_uri(SECRET, issuer="Acme & Co: Login?", account="a'b@example.com")
    assert uri.startswith("otpauth://totp/")
    assert label_of(uri) == "Acme & Co: Login?:a'b@example.com"
    assert secret_of(uri) == SECRET
    assert "issuer=Acme%20%26%20Co%3A%20Login%3F" in uri


def test_the_qr_code_reads_back_as_exactly_the_uri(tmp_path: Path) -> None:
    uri = totp.otpauth_uri(SECRET, issuer="Latch", account="dana@example.com")
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg ") and "<script" not in svg and "style=" not in svg
    assert zbarimg(svg_png(svg, tmp_path / "qr.png")) == uri


@pytest.mark.parametrize("typed", ["123456", "123 456", "123-456", " 123456 "])
def test_codes_are_read_with_spaces_and_dashes(typed: str) -> None:
    assert totp.normalise(typed) == "123456"


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", "١٢٣٤٥٦", ""])
def test_what_cannot_be_a_code_is_refused(typed: str) -> None:
    assert totp.normalise(typed) is None


def test_a_sealed_secret_opens_only_with_its_key_for_its_user() -> None:
    key = crypto.Keys.from_secret(b"k" * 32).totp_seal
    sealed = crypto.seal(key, SECRET.encode(), "user-1")
    assert SECRET not in sealed
    assert crypto.unseal(key, sealed, "user-1") == SECRET.encode()
    assert crypto.unseal(key, sealed, "user-2") is None  # copied into another user's row
    other = crypto.Keys.from_secret(b"o" * 32).totp_seal
    assert crypto.unseal(other, sealed, "user-1") is None  # another SECRET_KEY
    assert crypto.unseal(key, sealed[:-2] + "AA", "user-1") is None  # tampered with
    assert crypto.unseal(key, "not sealed", "user-1") is None
    assert crypto.seal(key, SECRET.encode(), "user-1") != sealed  # a fresh nonce each time
