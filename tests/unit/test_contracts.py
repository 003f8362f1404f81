"""Payload contracts and step input binding: what a run would accept or reject."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from samples import daily_digest
from squidmesh_sdk import (
    COMPLETE,
    InvalidPayload,
    StepContext,
    StepInputError,
    Workflow,
    compile,
    manual,
    now,
    today,
)
from squidmesh_sdk.clock import use_clock
from squidmesh_sdk.contracts import InputBinder, build_step_body


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class Order(BaseModel):
    order_id: str
    amount_cents: int
    note: str | None = None


def _contract(model: type[BaseModel] | None) -> Any:
    wf = Workflow("wf", triggers=[manual("go", payload=model)])
    wf.chain(wf.log("a", message="a"), COMPLETE)
    return compile(wf).trigger().contract


def test_valid_payload_is_returned_json_safe_with_defaults() -> None:
    assert _contract(Order).validate({"order_id": "o1", "amount_cents": 100}) == {
        "order_id": "o1",
        "amount_cents": 100,
        "note": None,
    }


def test_missing_unknown_and_invalid_fields_are_reported_together() -> None:
    with pytest.raises(InvalidPayload) as raised:
        _contract(Order).validate({"amount_cents": "lots", "coupon": "X", "apply": True})
    error = raised.value
    assert error.missing_fields == ("order_id",)
    assert error.unknown_fields == ("apply", "coupon")
    assert list(error.invalid_fields) == ["amount_cents"]
    assert error.to_dict() == {
        "missing_fields": ["order_id"],
        "unknown_fields": ["apply", "coupon"],
        "invalid_fields": {"amount_cents": error.invalid_fields["amount_cents"]},
    }
    assert str(error).startswith("invalid payload for trigger 'go': missing fields: order_id;")


def test_unknown_fields_alone_are_rejected() -> None:
    with pytest.raises(InvalidPayload) as raised:
        _contract(Order).validate({"order_id": "o", "amount_cents": 1, "extra": 1})
    assert raised.value.to_dict() == {"unknown_fields": ["extra"]}


def test_trigger_without_payload_accepts_only_empty_mapping() -> None:
    contract = _contract(None)
    assert contract.validate({}) == {}
    with pytest.raises(InvalidPayload) as raised:
        contract.validate({"anything": 1})
    assert raised.value.unknown_fields == ("anything",)


@pytest.mark.parametrize("payload", [None, ["order_id"], "order_id=1", 3])
def test_non_mapping_payload_is_rejected(payload: object) -> None:
    with pytest.raises(InvalidPayload, match="expected a mapping"):
        _contract(Order).validate(payload)


def test_dynamic_defaults_follow_the_current_clock() -> None:
    contract = compile(daily_digest.workflow).trigger("daily_digest").contract
    with use_clock(FixedClock(datetime(2026, 3, 29, 23, 30, tzinfo=UTC))):
        assert contract.validate({}) == {"channel": "ops", "digest_date": "2026-03-29"}
        assert today() == date(2026, 3, 29)
        assert now() == datetime(2026, 3, 29, 23, 30, tzinfo=UTC)
    assert contract.validate({"channel": "eng", "digest_date": "2026-01-02"}) == {
        "channel": "eng",
        "digest_date": "2026-01-02",
    }


def test_manual_trigger_of_the_same_workflow_has_its_own_contract() -> None:
    contract = compile(daily_digest.workflow).trigger("manual_digest").contract
    with pytest.raises(InvalidPayload) as raised:
        contract.validate({})
    assert raised.value.missing_fields == ("channel", "digest_date")


def test_aliased_fields_are_known() -> None:
    class Aliased(BaseModel):
        order_id: str = Field(alias="orderId")

    assert _contract(Aliased).validate({"orderId": "o"}) == {"orderId": "o"}


# -- step inputs ---------------------------------------------------------------------------


def _binder(fn: Any) -> InputBinder:
    # The body as the compiler builds it; compiling a workflow would first ask where each
    # required input comes from (tests/unit/test_compile_inputs.py), which is not the point here.
    body, problems = build_step_body(fn.__name__, fn)
    assert body is not None, problems
    return body.binder


def _ctx() -> StepContext:
    return StepContext(run_id="r1", workflow="wf", step="s", attempt=1, trigger="go", payload={})


def test_inputs_are_selected_by_name_and_validated() -> None:
    def charge(order: Order, when: date, ctx: StepContext, retries: int = 3) -> None: ...

    context = _ctx()
    kwargs = _binder(charge).bind(
        {"order": {"order_id": "o", "amount_cents": "5"}, "when": "2026-01-02", "other": 1},
        context,
    )
    assert kwargs == {
        "order": Order(order_id="o", amount_cents=5),
        "when": date(2026, 1, 2),
        "ctx": context,
    }


def test_missing_and_invalid_inputs_fail_with_one_error() -> None:
    def charge(order_id: str, amount_cents: int, note: str = "") -> None: ...

    with pytest.raises(StepInputError) as raised:
        _binder(charge).bind({"amount_cents": "many"}, None)
    error = raised.value
    assert error.step == "charge"
    assert error.missing == ("order_id",)
    assert list(error.invalid) == ["amount_cents"]
    assert "missing inputs: order_id" in str(error)


def test_unannotated_inputs_pass_through_and_var_keyword_gets_the_rest() -> None:
    def loose(a, **rest):  # type: ignore[no-untyped-def]
        return None

    assert _binder(loose).bind({"a": object, "b": 2, "c": 3}, None) == {"a": object, "b": 2, "c": 3}


def test_binder_reports_input_names() -> None:
    def step_fn(x: int, ctx: StepContext, y: str = "") -> None: ...

    binder = _binder(step_fn)
    assert binder.input_names == ("x", "y")
    assert binder.context_param == "ctx"


def test_optional_context_and_annotated_constraints_are_honoured() -> None:
    def charge(amount: Annotated[int, Field(gt=0)], ctx: StepContext | None = None) -> None: ...

    binder = _binder(charge)
    assert binder.context_param == "ctx"
    assert binder.input_names == ("amount",)
    with pytest.raises(StepInputError) as raised:
        binder.bind({"amount": -5}, None)
    assert list(raised.value.invalid) == ["amount"]
