"""The compiled graph: immutability, routes, phases, retry maths and exports."""

from __future__ import annotations

import dataclasses
import json

import pytest

from samples import dependency_recovery, payment_recovery
from squidmesh_sdk import COMPLETE, InvalidTrigger, Retry, Workflow, compile, manual
from squidmesh_sdk.graph import COMPLETE_TARGET, RetryPolicy


def test_definition_is_immutable() -> None:
    definition = compile(payment_recovery.workflow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        definition.steps["x"] = definition.steps["load_invoice"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.steps["load_invoice"].kind = "log"  # type: ignore[misc]


def test_transition_graph_routes_and_entry() -> None:
    definition = compile(payment_recovery.workflow)
    assert definition.shape == "transition"
    assert definition.entry_steps == ("load_invoice",)
    assert definition.initial_step == "load_invoice"
    assert [e.target for e in definition.routes_from("load_invoice", "ok")] == [
        "check_gateway_status"
    ]
    assert [e.target for e in definition.routes_from("notify_customer", "ok")] == [COMPLETE_TARGET]
    assert definition.routes_from("load_invoice", "error") == ()
    (edge,) = definition.routes_from("check_gateway_status", "error")
    assert (edge.target, edge.recovery) == ("issue_gateway_credit", "compensation")
    assert definition.single_path
    assert definition.has_choices
    retry = definition.step("check_gateway_status").retry
    assert retry == RetryPolicy(max_attempts=5, backoff="fixed", min_delay=1.0, max_delay=1.0)
    assert definition.step("notify_customer").recovery.replay == "manual_review_required"


def test_dependency_graph_entry_steps_and_phases() -> None:
    definition = compile(dependency_recovery.workflow)
    assert definition.shape == "dependency"
    assert definition.entry_steps == ("load_account", "load_invoice")
    assert definition.initial_step is None
    join = definition.step("prepare_notification")
    assert join.depends_on == ("load_account", "load_invoice")
    assert join.phase == 1
    assert definition.step("load_account").phase == 0
    assert definition.dependents("load_invoice") == ("prepare_notification",)


def test_phase_is_the_longest_path() -> None:
    wf = Workflow("diamond", triggers=[manual("go")])

    @wf.step
    def a() -> None: ...

    @wf.step(after=[a])
    def b() -> None: ...

    @wf.step(after=[a, b])
    def c() -> None: ...

    definition = compile(wf)
    assert [definition.step(n).phase for n in ("a", "b", "c")] == [0, 1, 2]


def test_trigger_lookup() -> None:
    definition = compile(payment_recovery.workflow)
    assert definition.trigger().name == "payment_recovery"
    with pytest.raises(InvalidTrigger, match="no trigger 'nope'; declared: payment_recovery"):
        definition.trigger("nope")


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (
            RetryPolicy(max_attempts=5, backoff="exponential", min_delay=1, max_delay=5),
            [1, 2, 4, 5],
        ),
        (RetryPolicy(max_attempts=3, backoff="fixed", min_delay=2, max_delay=2), [2, 2]),
        (RetryPolicy(max_attempts=3), [0, 0]),
    ],
)
def test_retry_delays(policy: RetryPolicy, delays: list[float]) -> None:
    assert [policy.delay_after(n) for n in range(1, len(delays) + 1)] == delays
    assert policy.should_retry(len(delays))
    assert not policy.should_retry(len(delays) + 1)


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    policy = RetryPolicy(max_attempts=5000, backoff="exponential", min_delay=1, max_delay=30)
    assert policy.delay_after(1100) == 30


def test_jitter_removes_at_most_its_fraction() -> None:
    policy = RetryPolicy(max_attempts=3, backoff="fixed", min_delay=10, max_delay=10, jitter=0.5)
    assert policy.delay_after(1, rand=lambda: 0.0) == 10
    assert policy.delay_after(1, rand=lambda: 1.0) == 5


def test_json_export_is_json_safe_and_stable() -> None:
    first = compile(payment_recovery.workflow).to_dict()
    second = compile(payment_recovery.workflow).to_dict()
    assert first == second
    assert json.loads(json.dumps(first)) == first
    steps = {step["name"]: step for step in first["steps"]}
    assert steps["check_gateway_status"]["inputs"] == ["gateway_url", "attempt_id"]
    assert steps["check_gateway_status"]["function"] == (
        "samples.payment_recovery.check_gateway_status"
    )
    assert first["triggers"][0]["payload"]["gateway_url"] == {"type": "str", "required": True}
    assert first["edges"][3] == {
        "source": "check_gateway_status",
        "target": "issue_gateway_credit",
        "kind": "error",
        "recovery": "compensation",
    }


def _two_step(max_attempts: int) -> Workflow:
    wf = Workflow("fp", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=max_attempts))
    def a() -> None: ...

    wf.chain(a, COMPLETE)
    return wf


def test_fingerprint_is_stable_and_tracks_changes() -> None:
    assert compile(_two_step(2)).fingerprint == compile(_two_step(2)).fingerprint
    assert compile(_two_step(2)).fingerprint != compile(_two_step(3)).fingerprint
    assert compile(_two_step(2)).fingerprint.startswith("sha256:")
    assert compile(_two_step(2)).to_dict()["fingerprint"] == compile(_two_step(2)).fingerprint


def test_mermaid_escapes_reserved_ids() -> None:
    wf = Workflow("reserved", triggers=[manual("go")])
    wf.chain(wf.log("start", message="s"), wf.log("end", message="e"), COMPLETE)
    assert compile(wf).to_mermaid() == (
        "flowchart TD\n"
        '    start[/"start (log)"/]\n'
        '    step_end[/"end (log)"/]\n'
        '    __complete__(("complete"))\n'
        "    start -->|ok| step_end\n"
        "    step_end -->|ok| __complete__\n"
    )


def _digest(default: str, doc: str) -> Workflow:
    from pydantic import BaseModel

    class Payload(BaseModel):
        channel: str = default

    wf = Workflow("fp", triggers=[manual("go", payload=Payload)])

    def send(channel: str) -> None: ...

    send.__doc__ = doc
    wf.chain(wf.step(send), COMPLETE)
    return wf


def test_fingerprint_follows_the_contract_not_the_prose() -> None:
    base = compile(_digest("ops", "Send it.")).fingerprint
    assert compile(_digest("eng", "Send it.")).fingerprint != base
    assert compile(_digest("ops", "Send it, reworded.")).fingerprint == base


def test_mermaid_ids_never_collide() -> None:
    wf = Workflow("collide", triggers=[manual("go")])
    wf.chain(wf.log("end", message="e"), wf.log("step_end", message="s"), COMPLETE)
    text = compile(wf).to_mermaid()
    assert '    _step_end[/"end (log)"/]\n' in text
    assert "    _step_end -->|ok| step_end\n" in text
