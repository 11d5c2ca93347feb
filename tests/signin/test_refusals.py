"""Every refusal verdict of the store maps to its own public error, in one place."""

from __future__ import annotations

from service import store
from service.errors import ErrorCode
from service.signin.refusals import flow_refusal, step_refusal

EXPECTED = {
    store.Verdict.WRONG: ErrorCode.INVALID_CODE,
    store.Verdict.USED: ErrorCode.FLOW_USED,
    store.Verdict.EXPIRED: ErrorCode.FLOW_EXPIRED,
    store.Verdict.DEAD: ErrorCode.FLOW_DEAD,
    store.Verdict.MAIL_FAILED: ErrorCode.FLOW_EXPIRED,
    store.Verdict.CODES_LOCKED: ErrorCode.CODES_LOCKED,
    store.Verdict.RATE_LIMITED: ErrorCode.RATE_LIMITED,
    store.Verdict.INVALID: ErrorCode.INVALID_LINK,
    store.Verdict.NOT_FOUND: ErrorCode.NOT_FOUND,
    store.Verdict.DISABLED: ErrorCode.ACCOUNT_DISABLED,
}


def test_each_flow_verdict_maps_to_its_error_code() -> None:
    for verdict, code in EXPECTED.items():
        assert flow_refusal(store.Outcome(verdict)).code == code, verdict


def test_every_refusal_verdict_is_mapped_explicitly() -> None:
    refusals = set(store.Verdict) - {store.Verdict.OK, store.Verdict.PENDING}
    assert refusals == set(EXPECTED)


def test_a_wrong_code_carries_the_tries_left() -> None:
    error = flow_refusal(store.Outcome(store.Verdict.WRONG, tries_left=2))
    assert error.to_json()["error"]["tries_left"] == 2


def test_a_step_that_cannot_take_an_answer_reads_as_used_dead_or_expired() -> None:
    assert step_refusal(store.StepState.USED).code == ErrorCode.FLOW_USED
    assert step_refusal(store.StepState.DEAD).code == ErrorCode.FLOW_DEAD
    assert step_refusal(store.StepState.EXPIRED).code == ErrorCode.SIGNIN_EXPIRED
    assert step_refusal(store.StepState.NOT_FOUND).code == ErrorCode.SIGNIN_EXPIRED
