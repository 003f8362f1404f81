"""Compile-time input checks: a required parameter needs a payload field or an upstream output.

Where a step's upstream declares its outputs (``output=``, a typed return, a built-in step),
a parameter nothing can provide is an ``unknown_input`` issue with a suggestion; an untyped
return upstream leaves the check to run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Generic, NoReturn, NotRequired, TypedDict, TypeVar

import pytest
from pydantic import BaseModel, ConfigDict, Field, RootModel, computed_field, model_serializer
from typing_extensions import TypeAliasType

from squidmesh_sdk import (
    COMPLETE,
    DefinitionError,
    StepContext,
    TriggerSpec,
    Workflow,
    compile,
    cron,
    manual,
)
from squidmesh_sdk.errors import Issue

T = TypeVar("T")


class Checkout(BaseModel):
    order_id: str
    amount_cents: int


class ReservationDict(TypedDict):
    reservation_id: str
    note: NotRequired[str]


class ReservationModel(BaseModel):
    reservation_id: str
    note: str | None = None


@dataclasses.dataclass
class ReservationData:
    reservation_id: str
    note: str | None = None


# Return annotations are resolved in the body's module (``from __future__ import annotations``
# makes them strings), so the types the bodies below name live here rather than in the tests.
class Notes(TypedDict):
    notes: str


class Receipt(TypedDict):
    receipt: str


def _wf(*triggers: TriggerSpec) -> Workflow:
    return Workflow("inputs", triggers=list(triggers) or [manual("checkout", payload=Checkout)])


def _issues(workflow: Workflow) -> tuple[Issue, ...]:
    with pytest.raises(DefinitionError) as raised:
        compile(workflow)
    return raised.value.issues


def _reserve_then(returns: Any, parameter: str) -> Workflow:
    """``reserve`` (returning ``returns``) then ``charge`` reading ``parameter``."""
    wf = _wf()

    def reserve(order_id: str) -> Any: ...

    reserve.__annotations__["return"] = returns

    def charge(**kwargs: Any) -> None: ...

    charge.__signature__ = _signature(parameter)  # type: ignore[attr-defined]
    wf.chain(wf.step(reserve), wf.step(charge), COMPLETE)
    return wf


def _signature(*required: str) -> Any:
    import inspect

    return inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in required]
    )


# -- the error and its suggestion ----------------------------------------------------------


def test_a_typo_in_a_parameter_is_an_error_that_suggests_the_name() -> None:
    wf = _wf()

    @wf.step
    def charge(order_idd: str, amount_cents: int) -> None: ...

    wf.chain(charge, COMPLETE)
    (issue,) = _issues(wf)
    assert (issue.code, issue.step) == ("unknown_input", "charge")
    assert issue.message == (
        "step 'charge': required input 'order_idd' is neither a payload field of any trigger "
        "(amount_cents, order_id) nor an output declared upstream (none); "
        "did you mean `order_id`?"
    )


def test_the_suggestion_may_be_an_upstream_output() -> None:
    (issue,) = _issues(_reserve_then(ReservationDict, "reservation"))
    assert issue.step == "charge"
    assert "nor an output declared upstream (reserve: note, reservation_id)" in issue.message
    assert issue.message.endswith("did you mean `reservation_id`?")


def test_without_a_close_name_the_message_says_how_to_make_it_optional() -> None:
    wf = _wf()

    @wf.step
    def charge(coupon: str) -> None: ...

    wf.chain(charge, COMPLETE)
    (issue,) = _issues(wf)
    assert issue.message.endswith("; give it a default to make it optional")


def test_every_problem_is_reported_at_once() -> None:
    wf = _wf()

    @wf.step
    def reserve(order_ide: str) -> ReservationDict: ...

    @reserve.compensate
    def release(reservaton_id: str) -> None: ...

    @wf.step
    def charge(reservation_id: str, amount: int, ctx: StepContext) -> None: ...

    wf.transition(reserve, on="ok", to="nowhere")
    wf.chain(charge, COMPLETE)
    issues = _issues(wf)
    assert [(i.code, i.step) for i in issues] == [
        ("unknown_route_step", "reserve"),
        ("unknown_input", "reserve"),
        ("unknown_compensate_input", "reserve"),
        ("unknown_input", "charge"),
        ("unknown_input", "charge"),
    ]
    assert "did you mean `order_id`?" in issues[1].message
    assert issues[2].message.startswith("step 'reserve': compensate callback: required input")
    assert "did you mean `reservation_id`?" in issues[2].message
    assert "did you mean `amount_cents`?" in issues[4].message


# -- what satisfies a parameter ------------------------------------------------------------


def test_payload_fields_of_any_trigger_satisfy_parameters() -> None:
    class Refund(BaseModel):
        refund_id: str

    wf = _wf(manual("checkout", payload=Checkout), manual("refund", payload=Refund))

    @wf.step
    def settle(order_id: str, refund_id: str, ctx: StepContext) -> None: ...

    wf.chain(settle, COMPLETE)
    assert compile(wf).step("settle").body is not None


def test_a_payload_field_is_known_by_the_key_it_is_stored_under() -> None:
    class Aliased(BaseModel):
        order_id: str = Field(alias="orderId")

    wf = _wf(manual("go", payload=Aliased))

    @wf.step
    def by_alias(orderId: str) -> None: ...  # noqa: N803 - the payload's stored key

    @wf.step
    def by_name(order_id: str) -> None: ...

    wf.chain(by_alias, by_name, COMPLETE)
    (issue,) = _issues(wf)
    assert (issue.step, issue.code) == ("by_name", "unknown_input")
    assert "(orderId)" in issue.message


def test_cron_runs_carry_their_schedule() -> None:
    def report(schedule: dict[str, Any]) -> None: ...

    scheduled = _wf(cron("nightly", "0 3 * * *"))
    scheduled.chain(scheduled.step(report), COMPLETE)
    compile(scheduled)
    manual_only = _wf()
    manual_only.chain(manual_only.step(report), COMPLETE)
    assert [i.code for i in _issues(manual_only)] == ["unknown_input"]


def test_an_output_key_satisfies_exactly_that_name() -> None:
    wf = _wf()

    @wf.step(output="reservation")
    def reserve(order_id: str) -> ReservationDict: ...

    @wf.step
    def charge(reservation: dict[str, Any]) -> None: ...

    @wf.step
    def ship(reservation_id: str) -> None: ...

    wf.chain(reserve, charge, ship, COMPLETE)
    (issue,) = _issues(wf)
    assert issue.step == "ship"
    assert "(reserve: reservation)" in issue.message


@pytest.mark.parametrize(
    "returns",
    [
        ReservationDict,
        ReservationModel,
        ReservationData,
        ReservationModel | None,
        Annotated[ReservationData, "meta"],
        ReservationDict | ReservationModel,
        TypeAliasType("Alias", ReservationDict),
    ],
    ids=["TypedDict", "pydantic", "dataclass", "optional", "annotated", "union", "alias"],
)
def test_a_typed_return_declares_its_keys(returns: Any) -> None:
    compile(_reserve_then(returns, "reservation_id"))
    (issue,) = _issues(_reserve_then(returns, "reservation"))
    assert issue.message.endswith("did you mean `reservation_id`?")


def test_a_model_declares_the_keys_it_is_dumped_under() -> None:
    class Dumped(BaseModel):
        reservation_id: str = Field(serialization_alias="reservationId")
        secret: str = Field(exclude=True)

        @computed_field  # type: ignore[prop-decorator]
        @property
        def summary(self) -> str:
            return self.reservation_id

    compile(_reserve_then(Dumped, "reservationId"))
    compile(_reserve_then(Dumped, "summary"))
    assert [i.code for i in _issues(_reserve_then(Dumped, "secret"))] == ["unknown_input"]


def test_generic_typed_returns_declare_their_keys() -> None:
    @dataclasses.dataclass
    class Box(Generic[T]):
        item: T

    compile(_reserve_then(Box[int], "item"))


@pytest.mark.parametrize("returns", [None, NoReturn])
def test_none_declares_nothing_and_a_log_step_does_not_hide_a_typo(returns: Any) -> None:
    wf = _wf()

    def reserve(order_id: str) -> Any: ...

    reserve.__annotations__["return"] = returns
    wf.step(reserve)

    @wf.step
    def charge(amount_cent: int) -> None: ...

    wf.chain("reserve", wf.log("note", message="charging"), wf.wait("later", duration=1), charge)
    wf.chain(charge, COMPLETE)
    (issue,) = _issues(wf)
    assert issue.message.endswith("did you mean `amount_cents`?")


# -- where the check gives way to run time -------------------------------------------------


class OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    reservation_id: str


class SerializedModel(BaseModel):
    reservation_id: str

    @model_serializer
    def dump(self) -> dict[str, Any]:
        return {"id": self.reservation_id}


@pytest.mark.parametrize(
    "returns",
    [
        dict,
        dict[str, Any],
        Mapping[str, Any],
        Any,
        ReservationModel | dict[str, Any],
        OpenModel,
        SerializedModel,
        RootModel[dict[str, str]],
    ],
    ids=[
        "dict",
        "dict[str, Any]",
        "Mapping",
        "Any",
        "union with dict",
        "extra=allow",
        "model_serializer",
        "RootModel",
    ],
)
def test_an_untyped_return_upstream_defers_the_check_to_run_time(returns: Any) -> None:
    compile(_reserve_then(returns, "anything_at_all"))


def test_a_return_without_annotation_defers_the_check_to_run_time() -> None:
    wf = _wf()

    def reserve(order_id):  # no annotations at all
        return {"reservation_id": f"r-{order_id}"}

    @wf.step
    def charge(reservation_id: str) -> None: ...

    wf.chain(wf.step(reserve), charge, COMPLETE)
    compile(wf)


def test_only_steps_upstream_count_not_a_sibling_branch() -> None:
    wf = _wf()

    @wf.step
    def reserve(order_id: str) -> ReservationDict: ...

    @wf.step
    def authorize(amount_cents: int) -> None: ...

    @wf.step(after=[authorize])
    def capture(reservation_id: str) -> None: ...

    @wf.step(after=[reserve, capture])
    def ship(reservation_id: str) -> None: ...

    (issue,) = _issues(wf)
    assert (issue.code, issue.step) == ("unknown_input", "capture")
    assert issue.message.endswith(
        "; 'reserve' declares it but does not run before it: make it a dependency "
        "(after=[...]) or a route on the way there"
    )


def test_an_untyped_sibling_does_not_defer_the_check() -> None:
    wf = _wf()

    @wf.step
    def start(order_id: str) -> None: ...

    @wf.step(after=[start])
    def reserve(order_id: str) -> dict[str, Any]: ...

    @wf.step(after=[start])
    def capture(reservation_id: str) -> None: ...

    (issue,) = _issues(wf)
    assert issue.step == "capture"


def test_defaults_make_a_parameter_optional() -> None:
    wf = _wf()

    @wf.step
    def charge(order_id: str, coupon: str | None = None) -> None: ...

    wf.chain(charge, COMPLETE)
    compile(wf)


def _review_loop(intake: Any) -> Workflow:
    """intake -> draft -> review, rejected -> revise -> draft again, approved -> publish."""
    wf = _wf()

    @wf.step
    def draft(order_id: str, notes: str) -> None: ...

    review = wf.approval("review", output="review")

    @wf.step
    def revise(review: dict[str, Any]) -> Notes: ...

    @wf.step
    def publish(notes: str, review: dict[str, Any]) -> None: ...

    wf.chain(wf.step(intake), draft, review, publish, COMPLETE)
    wf.transition(review, on="error", to=revise)
    wf.chain(revise, draft)
    return wf


def test_in_a_loop_the_whole_loop_is_upstream() -> None:
    def intake(order_id: str) -> None: ...

    def intake_reading_notes(order_id: str, notes: str) -> None: ...

    compile(_review_loop(intake))  # draft gets ``notes`` from revise, from the second time round
    (issue,) = _issues(_review_loop(intake_reading_notes))  # before the loop: never there
    assert (issue.step, issue.code) == ("intake_reading_notes", "unknown_input")


def test_built_in_steps_declare_what_they_store() -> None:
    wf = _wf()
    approval = wf.approval("approve")
    gate = wf.pause("gate", output="unblocked")

    @wf.step
    def record(decision: str, actor: dict[str, Any], unblocked: dict[str, Any]) -> None: ...

    @wf.step
    def rejected(decided_at: str) -> None: ...

    wf.chain(approval, gate, record, COMPLETE)
    wf.transition(approval, on="error", to=rejected)
    wf.chain(rejected, COMPLETE)
    compile(wf)


class Lines(BaseModel):
    lines: list[dict[str, Any]]
    warehouse: str


class Priced(TypedDict):
    price_cents: int


def test_a_map_step_reads_its_list_and_declares_the_list_of_its_outputs() -> None:
    wf = _wf(manual("go", payload=Lines))

    @wf.step(map_over="lines", map_as="line")
    def price(line: dict[str, Any], warehouse: str) -> Priced: ...

    @price.compensate
    def unprice(line: dict[str, Any], price_cents: int) -> None: ...

    @wf.step(map_over="lines", output="picked")
    def pick(item: dict[str, Any]) -> None: ...

    @wf.step(after=[price, pick])
    def total(price: list[dict[str, Any]], picked: list[Any]) -> None: ...

    compile(wf)


def test_a_map_elements_compensate_callback_sees_its_item_and_output() -> None:
    wf = _wf(manual("go", payload=Lines))

    @wf.step(map_over="lines", map_as="line")
    def price(line: dict[str, Any]) -> Priced: ...

    @price.compensate
    def unprice(line: dict[str, Any], price_cent: int) -> None: ...

    wf.chain(price, COMPLETE)
    (issue,) = _issues(wf)
    assert issue.code == "unknown_compensate_input"
    assert "(price: price; price (each element): price_cents)" in issue.message
    assert issue.message.endswith("did you mean `price_cents`?")


def test_a_map_over_an_unknown_key_is_an_error() -> None:
    wf = _wf(manual("go", payload=Lines))

    @wf.step(map_over="line", map_as="line")
    def price(line: dict[str, Any]) -> None: ...

    @wf.step(map_over="order.lines")
    def pick(item: dict[str, Any]) -> None: ...

    wf.chain(price, pick, COMPLETE)
    first, second = _issues(wf)
    assert (first.step, first.code) == ("price", "unknown_input")
    assert first.message.startswith("step 'price': map_over 'line' is neither a payload field")
    assert first.message.endswith("did you mean `lines`?")
    assert second.message.startswith("step 'pick': map_over 'order.lines' (its key 'order') is")


def test_a_computed_wait_reads_its_key() -> None:
    class Plan(BaseModel):
        delay_seconds: int

    def schedule() -> Annotated[Receipt, "typed"]: ...

    wf = _wf(manual("go", payload=Plan))
    wf.chain(
        wf.wait("settle", duration_from="delay_seconds"),
        wf.wait("cool_down", duration_from="delay_secs"),
        wf.step(schedule),
        wf.wait("until_receipt", until_from="receipt.at"),
        wf.wait("until_shipped", until_from="shipped_at"),
        COMPLETE,
    )
    first, second = _issues(wf)
    assert first.message == (
        "step 'cool_down': duration_from 'delay_secs' is neither a payload field of any trigger "
        "(delay_seconds) nor an output declared upstream (none); did you mean `delay_seconds`?"
    )
    assert second.message == (
        "step 'until_shipped': until_from 'shipped_at' is neither a payload field of any "
        "trigger (delay_seconds) nor an output declared upstream (schedule: receipt)"
    )


def test_compensate_callbacks_may_read_any_steps_declared_output() -> None:
    wf = _wf()

    @wf.step(output="reservation")
    def reserve(order_id: str) -> None: ...

    @reserve.compensate
    def release(reservation: dict[str, Any], receipt: str, ctx: StepContext) -> None: ...

    @wf.step
    def email(order_id: str) -> Receipt: ...

    wf.chain(reserve, email, COMPLETE)
    compile(wf)  # ``receipt`` comes from a step after it, which may have completed


def test_a_broken_trigger_turns_the_check_off() -> None:
    wf = _wf(manual("go", payload=dict))  # type: ignore[arg-type]

    @wf.step
    def charge(order_id: str) -> None: ...

    wf.chain(charge, COMPLETE)
    assert [i.code for i in _issues(wf)] == ["invalid_payload_model"]


def test_a_payload_whose_keys_are_not_fixed_turns_the_check_off() -> None:
    class Custom(BaseModel):
        order_id: str

        @model_serializer
        def dump(self) -> dict[str, Any]:
            return {"id": self.order_id}

    wf = _wf(manual("go", payload=Custom))

    @wf.step
    def charge(anything: str) -> None: ...

    wf.chain(charge, COMPLETE)
    compile(wf)


def test_a_step_with_a_broken_body_defers_the_check_downstream() -> None:
    wf = _wf()

    def reserve(order_id: str, /) -> ReservationDict: ...

    @wf.step
    def charge(anything: str) -> None: ...

    wf.chain(wf.step(reserve), charge, COMPLETE)
    assert [i.code for i in _issues(wf)] == ["invalid_step_body"]
