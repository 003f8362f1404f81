"""Signals: a run waits for a named signal, takes its payload and goes on, on both databases.

What an operator sees: the step's output and the run's context, the signals with their status
and key in ``inspect_run``, the audit events, ``explain_run``'s reason, and the errors a bad
signal raises (nothing stored).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    InvalidPayload,
    InvalidSignal,
    Workflow,
    compile,
    manual,
)
from squidmesh_sdk.errors import DefinitionError
from squidmesh_sdk.store.records import Run
from tests.integration.runtime.conftest import MakeEnv


class Payment(BaseModel):
    amount: int
    reference: str


class Order(BaseModel):
    order_id: str


def payments() -> Workflow:
    """place -> wait for payment_received (its payload under "payment") -> ship."""
    wf = Workflow("payments", triggers=[manual("order", payload=Order)])

    @wf.step
    def place(order_id: str) -> dict[str, Any]:
        return {"placed": order_id}

    paid = wf.signal("payment_received", payload=Payment, output="payment", timeout=3600)

    @wf.step
    def ship(payment: dict[str, Any]) -> dict[str, Any]:
        return {"shipped_for": payment["reference"]}

    @wf.step
    def chase() -> dict[str, Any]:
        return {"chased": True}

    wf.chain(place, paid, ship, COMPLETE)
    wf.transition(paid, on="timeout", to=chase)
    return wf


def _events(run: Run, kind: str) -> list[Any]:
    return [event for event in run.events or () if event.type == kind]


def test_a_run_waits_for_its_signal_and_goes_on_with_the_payload(make_env: MakeEnv) -> None:
    env = make_env(payments())
    run = env.start_run("payments", {"order_id": "o-1"})
    waiting = env.client.inspect_run(run.id)
    assert (waiting.status, waiting.current_step) == ("running", "payment_received")
    explanation = env.client.explain_run(run.id)
    assert explanation.reason == "waiting_for_signal"
    assert explanation.step == "payment_received"
    assert explanation.details["signal"] == "payment_received"
    assert explanation.details["timeout_target"] == "chase"
    assert explanation.next_actions == ("signal_run", "cancel_run")

    signal = env.client.signal(
        run.id, "payment_received", {"amount": 30, "reference": "pay-7"}, idempotency_key="k1"
    )
    assert (signal.status, signal.step, signal.duplicate) == ("consumed", "payment_received", False)

    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["payment"] == {"amount": 30, "reference": "pay-7"}
    assert done.context["shipped_for"] == "pay-7"
    assert [(s.name, s.status, s.idempotency_key) for s in done.signals or ()] == [
        ("payment_received", "consumed", "k1")
    ]
    received = _events(done, "signal_received")
    assert [(e.step, e.metadata["idempotency_key"], e.metadata["buffered"]) for e in received] == [
        ("payment_received", "k1", False)
    ]
    assert [e.step for e in _events(done, "signal_consumed")] == ["payment_received"]


def test_a_signal_sent_before_the_wait_is_kept_and_consumed_there(make_env: MakeEnv) -> None:
    env = make_env(payments(), run_immediately=False)
    run = env.start_run("payments", {"order_id": "o-2"})
    assert env.client.inspect_run(run.id).status == "pending"  # nothing ran yet
    early = env.client.signal(run.id, "payment_received", {"amount": 5, "reference": "early"})
    assert (early.status, early.step) == ("pending", None)
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["shipped_for"] == "early"
    assert [(s.status, s.step) for s in done.signals or ()] == [("consumed", "payment_received")]
    assert [e.metadata["buffered"] for e in _events(done, "signal_received")] == [True]


def test_the_same_idempotency_key_twice_is_one_signal(make_env: MakeEnv) -> None:
    env = make_env(payments(), run_immediately=False)
    run = env.start_run("payments", {"order_id": "o-3"})
    body = {"amount": 1, "reference": "once"}
    first = env.client.signal(run.id, "payment_received", body, idempotency_key="webhook-1")
    again = env.client.signal(run.id, "payment_received", body, idempotency_key="webhook-1")
    assert again.duplicate is True
    assert again.id == first.id
    with pytest.raises(InvalidSignal) as conflict:
        env.client.signal(
            run.id, "payment_received", {"amount": 2, "reference": "x"}, idempotency_key="webhook-1"
        )
    assert conflict.value.code == "signal_key_conflict"
    stored = env.client.inspect_run(run.id, include_history=True)
    assert len(stored.signals or ()) == 1
    assert len(_events(stored, "signal_received")) == 1


def test_signals_of_one_name_are_consumed_oldest_first_one_per_wait(make_env: MakeEnv) -> None:
    class Note(BaseModel):
        text: str

    wf = Workflow("notes", triggers=[manual("go")])
    first = wf.signal("first", signal="note", payload=Note, output="one")
    second = wf.signal("second", signal="note", payload=Note, output="two")
    wf.chain(first, second, COMPLETE)
    env = make_env(wf, run_immediately=False)
    run = env.start_run("notes")
    for text in ("a", "b", "c"):
        env.client.signal(run.id, "note", {"text": text})
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert (done.context["one"], done.context["two"]) == ({"text": "a"}, {"text": "b"})
    assert [(s.payload["text"], s.status, s.step) for s in done.signals or ()] == [
        ("a", "consumed", "first"),
        ("b", "consumed", "second"),
        ("c", "pending", None),
    ]


def test_a_signal_wait_times_out_onto_its_timeout_route(make_env: MakeEnv) -> None:
    env = make_env(payments())
    run = env.start_run("payments", {"order_id": "o-4"})
    env.advance(timedelta(minutes=59))
    assert env.client.inspect_run(run.id).status == "running"
    env.advance(timedelta(minutes=2))
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["chased"] is True
    step_run = done.step_run("payment_received")
    assert step_run is not None
    assert step_run.status == "failed"
    assert step_run.last_error is not None
    assert step_run.last_error["code"] == "signal_timed_out"
    assert "received no signal within 3600s" in step_run.last_error["message"]
    # Too late: the run is finished.
    with pytest.raises(InvalidSignal) as late:
        env.client.signal(run.id, "payment_received", {"amount": 1, "reference": "late"})
    assert late.value.code == "signal_run_finished"


def test_a_signal_wait_without_timeout_route_fails_the_run(make_env: MakeEnv) -> None:
    wf = Workflow("must_pay", triggers=[manual("go")])
    paid = wf.signal("paid", timeout=60)
    wf.chain(paid, COMPLETE)
    env = make_env(wf)
    run = env.start_run("must_pay")
    env.advance(61)
    failed = env.client.inspect_run(run.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["code"] == "signal_timed_out"
    assert env.client.explain_run(run.id).reason == "timed_out"


def test_bad_signals_are_refused_and_nothing_is_stored(make_env: MakeEnv) -> None:
    env = make_env(payments())
    run = env.start_run("payments", {"order_id": "o-5"})
    with pytest.raises(InvalidPayload) as invalid:
        env.client.signal(run.id, "payment_received", {"amount": "lots"})
    assert invalid.value.missing_fields == ("reference",)
    assert "amount" in invalid.value.invalid_fields
    assert "invalid payload for signal 'payment_received'" in str(invalid.value)
    with pytest.raises(InvalidSignal) as unknown:
        env.client.signal(run.id, "refund_requested")
    assert unknown.value.code == "unknown_signal"
    assert "payment_received" in str(unknown.value)
    stored = env.client.inspect_run(run.id, include_history=True)
    assert stored.signals == ()
    assert stored.status == "running"
    env.client.cancel_run(run.id, actor="ops")
    with pytest.raises(InvalidSignal) as cancelled:
        env.client.signal(run.id, "payment_received", {"amount": 1, "reference": "r"})
    assert cancelled.value.code == "signal_run_finished"


def test_a_signal_step_in_a_graph_with_several_paths(make_env: MakeEnv) -> None:
    wf = Workflow("fanout_signal", triggers=[manual("go")])

    @wf.step
    def start() -> dict[str, Any]:
        return {"started": True}

    @wf.step(after=[start])
    def work() -> dict[str, Any]:
        return {"worked": True}

    confirm = wf.signal("confirm", after=[start])

    @wf.step(after=[work, confirm])
    def finish() -> dict[str, Any]:
        return {"finished": True}

    env = make_env(wf)
    run = env.start_run("fanout_signal")
    assert env.client.explain_run(run.id).reason == "waiting_for_signal"
    env.client.signal(run.id, "confirm")
    done = env.client.inspect_run(run.id)
    assert done.status == "completed"
    assert done.context["finished"] is True


def test_signal_steps_of_one_name_must_share_a_payload_model() -> None:
    class Other(BaseModel):
        value: int

    wf = Workflow("conflict", triggers=[manual("go")])
    a = wf.signal("a", signal="ping", payload=Payment)
    b = wf.signal("b", signal="ping", payload=Other)
    wf.chain(a, b, COMPLETE)
    with pytest.raises(DefinitionError) as error:
        compile(wf)
    assert [issue.code for issue in error.value.issues] == ["conflicting_signal_payload"]
