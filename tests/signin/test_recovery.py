"""Recovery codes as people read and type them: the alphabet, the shape, the forgiving input."""

from __future__ import annotations

import pytest

from service.signin import recovery


def test_ten_different_codes_of_ten_characters_without_look_alikes() -> None:
    codes = recovery.new_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert len(code) == 11 and code[5] == "-"
        assert set(code.replace("-", "")) <= set(recovery.ALPHABET)
    assert not set("ilou") & set(recovery.ALPHABET) and len(recovery.ALPHABET) == 32


@pytest.mark.parametrize(
    "typed",
    ["ab1cd-ef0gh", "AB1CD-EF0GH", "ab1cd ef0gh", "abicd-efogh", "ABLCDEFOGH", " ab1cdef0gh "],
)
def test_codes_are_read_in_any_case_with_or_without_the_dash_and_look_alikes(typed: str) -> None:
    assert recovery.normalise(typed) == "ab1cdef0gh"


@pytest.mark.parametrize("typed", ["", "ab1cd-ef0g", "ab1cd-ef0ghj", "ab1cd-ef0gu", "ab1cd_ef0gh"])
def test_what_cannot_be_a_recovery_code_is_refused(typed: str) -> None:
    assert recovery.normalise(typed) is None
