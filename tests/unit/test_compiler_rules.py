"""Every compile-time rule: a workflow that breaks it yields exactly its issue code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field, field_validator

from squidmesh_sdk import (
    COMPLETE,
    Backoff,
    Branch,
    DefinitionError,
    Retry,
    StepSpec,
    TriggerSpec,
    Workflow,
    compile,
    cron,
    manual,
    when,
)


def _wf(name: str = "wf", **kwargs: object) -> Workflow:
    return Workflow(name, triggers=[manual("go")], **kwargs)  # type: ignore[arg-type]


def _codes(workflow: Workflow) -> list[str]:
    with pytest.raises(DefinitionError) as raised:
        compile(workflow)
    return list(raised.value.codes)


def _only_spec(spec: StepSpec) -> Workflow:
    """A transition workflow of one hand-built step routed to COMPLETE."""
    wf = _wf()
    wf.chain(wf.add(spec), COMPLETE)
    return wf


def _single(**options: object) -> Workflow:
    wf = _wf()

    def only() -> None:
        return None

    step = wf.step(**options)(only)  # type: ignore[call-overload]
    wf.chain(step, COMPLETE)
    return wf


# -- workflow-level rules ------------------------------------------------------------------


def no_steps() -> Workflow:
    return _wf()


def no_triggers() -> Workflow:
    wf = Workflow("wf", triggers=[])

    @wf.step
    def a() -> None: ...

    wf.chain(a, COMPLETE)
    return wf


def invalid_workflow_name() -> Workflow:
    wf = Workflow("has space", triggers=[manual("go")])

    @wf.step
    def a() -> None: ...

    wf.chain(a, COMPLETE)
    return wf


def duplicate_trigger() -> Workflow:
    wf = Workflow("wf", triggers=[manual("go"), manual("go")])

    @wf.step
    def a() -> None: ...

    wf.chain(a, COMPLETE)
    return wf


def duplicate_step() -> Workflow:
    wf = _wf()
    wf.log("a", message="one")
    wf.log("a", message="two")
    wf.chain("a", COMPLETE)
    return wf


def invalid_step_name() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("not valid", message="x"), COMPLETE)
    return wf


def reserved_step_name() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("__complete__", message="x"), COMPLETE)
    return wf


# -- dependency rules ----------------------------------------------------------------------


def empty_after() -> Workflow:
    wf = _wf()

    @wf.step(after=[])
    def a() -> None: ...

    return wf


def unknown_dependency() -> Workflow:
    wf = _wf()

    @wf.step(after=["ghost"])
    def a() -> None: ...

    return wf


def foreign_dependency() -> Workflow:
    other = _wf("other")

    @other.step
    def elsewhere() -> None: ...

    wf = _wf()

    @wf.step(after=[elsewhere])
    def a() -> None: ...

    return wf


def self_dependency() -> Workflow:
    wf = _wf()

    @wf.step
    def root() -> None: ...

    @wf.step(after=[root, "a"])
    def a() -> None: ...

    return wf


def dependency_cycle() -> Workflow:
    wf = _wf()

    @wf.step
    def root() -> None: ...

    @wf.step(after=[root, "c"])
    def b() -> None: ...

    @wf.step(after=[b])
    def c() -> None: ...

    return wf


def mixed_shapes() -> Workflow:
    wf = _wf()

    @wf.step
    def a() -> None: ...

    @wf.step(after=[a])
    def b() -> None: ...

    wf.chain(a, b)
    return wf


# -- transition rules ----------------------------------------------------------------------


def no_entry_step() -> Workflow:
    wf = _wf()
    a = wf.log("a", message="a", after=["b"])
    wf.log("b", message="b", after=[a])
    return wf


def duplicate_route() -> Workflow:
    wf = _wf()
    a = wf.log("a", message="a")
    b = wf.log("b", message="b")
    wf.chain(a, b, COMPLETE)
    wf.transition(a, on="ok", to=COMPLETE)
    return wf


def unknown_route_target() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("a", message="a"), "ghost")
    return wf


def unknown_route_source() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("a", message="a"), COMPLETE)
    wf.transition("ghost", on="ok", to=COMPLETE)
    return wf


def invalid_outcome() -> Workflow:
    wf = _wf()
    a = wf.log("a", message="a")
    wf.chain(a, COMPLETE)
    wf.transition(a, on="not a label", to=COMPLETE)
    return wf


def recovery_on_ok_route() -> Workflow:
    wf = _wf()
    wf.transition(wf.log("a", message="a"), on="ok", to=COMPLETE, recovery="undo")
    return wf


def invalid_recovery_label() -> Workflow:
    wf = _wf()
    a = wf.log("a", message="a")
    wf.chain(a, COMPLETE)
    wf.transition(a, on="error", to=COMPLETE, recovery="rollback")  # type: ignore[arg-type]
    return wf


def unreachable_step() -> Workflow:
    wf = _wf()
    a = wf.log("a", message="a")
    c = wf.log("c", message="c")
    wf.chain(a, c, COMPLETE)
    wf.transition(wf.wait("b", duration=1), on="ok", to="b")  # only reachable from itself
    return wf


# -- step option rules ---------------------------------------------------------------------


def retry_zero_attempts() -> Workflow:
    return _single(retry=Retry(max_attempts=0))


def retry_min_above_max() -> Workflow:
    return _single(retry=Retry(max_attempts=3, backoff=Retry.exponential(min=10, max=1)))


def retry_bad_jitter() -> Workflow:
    return _single(retry=Retry(max_attempts=3, backoff=Retry.fixed(1, jitter=2)))


def bad_timeout() -> Workflow:
    return _single(timeout=timedelta(0))


CENTURIES = timedelta(days=365 * 200)
"""Longer than any definition may wait: a timer that far would be past the year 9999."""


def timeout_of_centuries() -> Workflow:
    return _single(timeout=CENTURIES)


def backoff_of_centuries() -> Workflow:
    return _single(retry=Retry(max_attempts=2, backoff=Retry.fixed(CENTURIES)))


def wait_of_centuries() -> Workflow:
    wf = _wf()
    wf.chain(wf.wait("w", duration=1e30), COMPLETE)
    return wf


def deadline_of_centuries() -> Workflow:
    wf = Workflow("wf", triggers=[manual("go")], deadline=CENTURIES)
    wf.log("a", message="a")
    return wf


def retry_not_a_policy() -> Workflow:
    return _single(retry=3)  # was AttributeError: 'int' object has no attribute 'max_attempts'


def backoff_not_a_backoff() -> Workflow:
    return _single(retry=Retry(max_attempts=3, backoff=5))  # type: ignore[arg-type]


def step_name_too_long() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("s" * 101, message="m"), COMPLETE)
    return wf


def step_name_with_a_trailing_newline() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("s\n", message="m"), COMPLETE)  # "$" let it through
    return wf


def workflow_name_too_long() -> Workflow:
    wf = Workflow("w" * 101, triggers=[manual("go")])
    wf.chain(wf.log("a", message="a"), COMPLETE)
    return wf


def bad_output_key() -> Workflow:
    return _single(output="")


def irreversible_and_compensatable() -> Workflow:
    return _single(irreversible=True, compensatable=True)


def compensate_on_irreversible() -> Workflow:
    wf = _wf()

    @wf.step(irreversible=True)
    def charge() -> None: ...

    @charge.compensate
    def refund() -> None: ...

    wf.chain(charge, COMPLETE)
    return wf


def compensate_on_builtin() -> Workflow:
    wf = _wf()

    def undo() -> None: ...

    wf.chain(wf.add(StepSpec(name="w", kind="wait", duration=1, compensate=undo)), COMPLETE)
    return wf


def transaction_on_builtin() -> Workflow:
    return _only_spec(StepSpec(name="l", kind="log", message="m", transaction=True))


def positional_only_body() -> Workflow:
    wf = _wf()

    def body(x: int, /) -> None: ...

    wf.chain(wf.step(body), COMPLETE)
    return wf


def unresolvable_annotation() -> Workflow:
    wf = _wf()

    def body(x: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    wf.chain(wf.step(body), COMPLETE)
    return wf


def bad_log_level() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("l", message="m", level="loud"), COMPLETE)  # type: ignore[arg-type]
    return wf


def empty_log_message() -> Workflow:
    wf = _wf()
    wf.chain(wf.log("l", message="  "), COMPLETE)
    return wf


def bad_wait_duration() -> Workflow:
    wf = _wf()
    wf.chain(wf.wait("w", duration=-5), COMPLETE)
    return wf


# -- trigger rules -------------------------------------------------------------------------


def _with_triggers(*triggers: TriggerSpec) -> Workflow:
    wf = Workflow("wf", triggers=list(triggers))
    wf.chain(wf.log("a", message="a"), COMPLETE)
    return wf


class Defaults(BaseModel):
    channel: str = "ops"


class BadDefault(BaseModel):
    retries: int = "many"  # type: ignore[assignment]


class BadFactory(BaseModel):
    day: int = Field(default_factory=date.today)


class NeedsInput(BaseModel):
    channel: str


class ChannelAsInt(BaseModel):
    channel: int = 1


def invalid_cron_expression() -> Workflow:
    return _with_triggers(cron("tick", "61 * * * *", payload=Defaults))


def reboot_cron_expression() -> Workflow:
    return _with_triggers(cron("tick", "@reboot"))


def invalid_timezone() -> Workflow:
    return _with_triggers(cron("tick", "@daily", timezone="Mars/Olympus"))


def invalid_idempotency() -> Workflow:
    return _with_triggers(cron("tick", "@daily", idempotency="once"))  # type: ignore[arg-type]


def idempotency_on_manual() -> Workflow:
    return _with_triggers(TriggerSpec(name="go", kind="manual", idempotency="skip_duplicate"))


def invalid_payload_default() -> Workflow:
    return _with_triggers(manual("go", payload=BadDefault))


def invalid_payload_factory_default() -> Workflow:
    return _with_triggers(manual("go", payload=BadFactory))


def cron_payload_requires_input() -> Workflow:
    return _with_triggers(cron("tick", "@daily", payload=NeedsInput))


def conflicting_payload_field() -> Workflow:
    return _with_triggers(
        manual("go", payload=NeedsInput), cron("tick", "@daily", payload=ChannelAsInt)
    )


def payload_not_a_model() -> Workflow:
    return _with_triggers(manual("go", payload=dict))  # type: ignore[arg-type]


def trigger_not_a_spec() -> Workflow:
    return _with_triggers("go")  # type: ignore[arg-type]


def invalid_trigger_name() -> Workflow:
    return _with_triggers(manual("go now"))


def invalid_trigger_kind() -> Workflow:
    return _with_triggers(TriggerSpec(name="go", kind="webhook"))  # type: ignore[arg-type]


class ConstrainedDefault(BaseModel):
    retries: int = Field(default=1, gt=5)


def constrained_payload_default() -> Workflow:
    return _with_triggers(manual("go", payload=ConstrainedDefault))


def function_without_body() -> Workflow:
    return _only_spec(StepSpec(name="a"))


def unknown_step_kind() -> Workflow:
    return _only_spec(StepSpec(name="a", kind="teleport"))  # type: ignore[arg-type]


def builtin_with_body() -> Workflow:
    return _only_spec(StepSpec(name="a", kind="log", message="m", fn=print))


def compensate_not_callable() -> Workflow:
    wf = _wf()

    def body() -> None: ...

    wf.chain(wf.add(StepSpec(name="a", fn=body, compensate="undo")), COMPLETE)  # type: ignore[arg-type]
    return wf


def compensate_with_star_args() -> Workflow:
    wf = _wf()

    @wf.step
    def a() -> None: ...

    @a.compensate
    def undo(*args: object) -> None: ...

    wf.chain(a, COMPLETE)
    return wf


def non_bool_flag() -> Workflow:
    return _single(irreversible="yes")


def retry_attempts_not_int() -> Workflow:
    return _single(retry=Retry(max_attempts=2.5))  # type: ignore[arg-type]


def retry_unknown_backoff_kind() -> Workflow:
    return _single(retry=Retry(max_attempts=2, backoff=Backoff(kind="linear", min=1, max=2)))  # type: ignore[arg-type]


def loop_without_complete() -> Workflow:
    wf = _wf()
    a, c = (wf.log(n, message=n) for n in "ac")
    b = wf.wait("b", duration=1)
    wf.chain(a, b, c, b)
    return wf


def loop_without_wait() -> Workflow:
    wf = _wf()
    start, a, b = (wf.log(n, message=n) for n in ("start", "a", "b"))
    wf.chain(start, a, b, COMPLETE)
    wf.transition(b, on="error", to=a)
    return wf


def join_in_loop() -> Workflow:
    wf = _wf()
    start = wf.log("start", message="start")
    a = wf.log("a", message="a")
    gate = wf.approval("gate")
    wf.chain(start, a, gate, COMPLETE)
    wf.transition(gate, on="error", to=a)
    wf.log("after_a", message="x", after=[a])
    return wf


def branch_on_builtin() -> Workflow:
    wf = _wf()
    wf.transition(wf.log("a", message="a"), on="large", to=COMPLETE)
    return wf


def conditional_without_default() -> Workflow:
    wf = _wf()

    @wf.step
    def a() -> None: ...

    wf.transition(a, on="ok", to=COMPLETE, when=when("output.total").greater_than(3))
    return wf


def invalid_condition() -> Workflow:
    wf = _wf()

    @wf.step
    def a() -> None: ...

    wf.transition(a, on="ok", to=COMPLETE, when=when("total").is_in("abc"))  # type: ignore[arg-type]
    wf.transition(a, on="ok", to=COMPLETE)
    return wf


def condition_on_error_route() -> Workflow:
    wf = _wf()

    @wf.step
    def a() -> None: ...

    wf.transition(a, on="error", to=COMPLETE, when=when("output.x").exists())
    return wf


def timeout_route_without_timeout() -> Workflow:
    wf = _wf()
    gate = wf.approval("gate")
    wf.transition(gate, on="timeout", to=COMPLETE)
    return wf


def bad_deadline() -> Workflow:
    wf = Workflow("wf", triggers=[manual("go")], deadline=-5)
    wf.log("a", message="a")
    return wf


def map_without_parameter() -> Workflow:
    wf = _wf()

    @wf.step(map_over="lines", max_parallel=0)
    def charge(order_id: str) -> None: ...

    return wf


def wait_with_two_lengths() -> Workflow:
    wf = _wf()
    wf.wait("w", duration=3, duration_from="delay")
    return wf


def method_step() -> Workflow:
    wf = _wf()

    class Service:
        @wf.step
        def charge(self, order_id: str) -> None: ...

    wf.chain(Service.charge, COMPLETE)
    return wf


def six_field_cron() -> Workflow:
    return _with_triggers(cron("tick", "* * * * * *"))


class ValidatedDefault(BaseModel):
    channel: str = Field(default="ops", validate_default=True)

    @field_validator("channel")
    @classmethod
    def must_be_a_channel(cls, value: str) -> str:
        if not value.startswith("#"):
            raise ValueError("channel must start with #")
        return value


def cron_default_fails_validator() -> Workflow:
    return _with_triggers(cron("tick", "@daily", payload=ValidatedDefault))


class AliasedStr(BaseModel):
    order_id: str = Field(alias="orderId")


class KeyedInt(BaseModel):
    orderId: int  # noqa: N815 - the stored key is what must agree


def conflicting_aliased_field() -> Workflow:
    return _with_triggers(manual("a", payload=AliasedStr), manual("b", payload=KeyedInt))


def lambda_step() -> Workflow:
    wf = _wf()
    wf.chain(wf.step(lambda: None), COMPLETE)
    return wf


def bad_signal_name() -> Workflow:
    wf = _wf()
    wf.chain(wf.signal("paid", signal="not a name"), COMPLETE)
    return wf


def signal_payload_not_a_model() -> Workflow:
    wf = _wf()
    wf.chain(wf.signal("paid", payload=dict), COMPLETE)
    return wf


def conflicting_signal_payload() -> Workflow:
    wf = _wf()
    wf.chain(wf.signal("a", signal="s", payload=KeyedInt), wf.signal("b", signal="s"), COMPLETE)
    return wf


def bad_child_workflow() -> Workflow:
    wf = _wf()
    wf.chain(wf.child("ship", workflow="no such name!"), COMPLETE)
    return wf


def bad_child_payload_path() -> Workflow:
    wf = _wf()
    wf.chain(wf.child("ship", workflow="shipping", payload_from={"to": "a..b"}), COMPLETE)
    return wf


def bad_parent_close_policy() -> Workflow:
    wf = _wf()
    policy: Any = "terminate"  # not a policy: the compiler, not only the type checker, refuses
    wf.chain(wf.child("ship", workflow="shipping", on_parent_close=policy), COMPLETE)
    return wf


def parent_close_policy_on_a_log_step() -> Workflow:
    return _only_spec(StepSpec(name="note", kind="log", message="hi", on_parent_close="abandon"))


def timeout_route_on_signal_without_timeout() -> Workflow:
    wf = _wf()
    paid = wf.signal("paid")
    wf.chain(paid, COMPLETE)
    wf.transition(paid, on="timeout", to=COMPLETE)
    return wf


RULES: list[tuple[Callable[[], Workflow], list[str]]] = [
    (bad_signal_name, ["invalid_signal_name"]),
    (signal_payload_not_a_model, ["invalid_signal_payload"]),
    (conflicting_signal_payload, ["conflicting_signal_payload"]),
    (bad_child_workflow, ["invalid_child_workflow"]),
    (bad_child_payload_path, ["invalid_child_payload"]),
    (bad_parent_close_policy, ["invalid_parent_close"]),
    (parent_close_policy_on_a_log_step, ["invalid_parent_close"]),
    (timeout_route_on_signal_without_timeout, ["timeout_route_without_timeout"]),
    (loop_without_complete, ["no_path_to_complete"]),
    (loop_without_wait, ["loop_without_wait"]),
    (join_in_loop, ["join_in_loop"]),
    (branch_on_builtin, ["branch_on_builtin"]),
    (conditional_without_default, ["missing_default_route"]),
    (invalid_condition, ["invalid_condition", "invalid_condition"]),
    (condition_on_error_route, ["condition_on_failure_route"]),
    (timeout_route_without_timeout, ["timeout_route_without_timeout"]),
    (bad_deadline, ["invalid_deadline"]),
    (map_without_parameter, ["invalid_map", "invalid_map"]),
    (wait_with_two_lengths, ["invalid_wait_duration"]),
    (method_step, ["invalid_step_body"]),
    (six_field_cron, ["invalid_cron_expression"]),
    (cron_default_fails_validator, ["invalid_payload_default"]),
    (conflicting_aliased_field, ["conflicting_payload_field"]),
    (lambda_step, ["invalid_step_name"]),
    (trigger_not_a_spec, ["invalid_trigger"]),
    (invalid_trigger_name, ["invalid_trigger_name"]),
    (invalid_trigger_kind, ["invalid_trigger_kind"]),
    (constrained_payload_default, ["invalid_payload_default"]),
    (function_without_body, ["missing_body"]),
    (unknown_step_kind, ["invalid_step_kind"]),
    (builtin_with_body, ["builtin_has_body"]),
    (compensate_not_callable, ["invalid_compensate"]),
    (compensate_with_star_args, ["invalid_compensate"]),
    (non_bool_flag, ["invalid_flag"]),
    (retry_attempts_not_int, ["invalid_retry"]),
    (retry_unknown_backoff_kind, ["invalid_retry"]),
    (no_steps, ["no_steps"]),
    (no_triggers, ["no_triggers"]),
    (invalid_workflow_name, ["invalid_name"]),
    (duplicate_trigger, ["duplicate_trigger"]),
    (duplicate_step, ["duplicate_step"]),
    (invalid_step_name, ["invalid_step_name"]),
    (reserved_step_name, ["invalid_step_name"]),
    (empty_after, ["empty_after"]),
    (unknown_dependency, ["unknown_dependency"]),
    (foreign_dependency, ["foreign_step"]),
    (self_dependency, ["self_dependency"]),
    (dependency_cycle, ["dependency_cycle"]),
    (mixed_shapes, ["activation_conflict"]),
    (no_entry_step, ["no_entry_step", "dependency_cycle"]),
    (duplicate_route, ["duplicate_route"]),
    (unknown_route_target, ["unknown_route_step"]),
    (unknown_route_source, ["unknown_route_step"]),
    (invalid_outcome, ["invalid_outcome"]),
    (recovery_on_ok_route, ["recovery_on_ok_route"]),
    (invalid_recovery_label, ["invalid_recovery_label"]),
    (unreachable_step, ["unreachable_step"]),
    (retry_zero_attempts, ["invalid_retry"]),
    (retry_min_above_max, ["invalid_retry"]),
    (retry_bad_jitter, ["invalid_retry"]),
    (bad_timeout, ["invalid_timeout"]),
    (retry_not_a_policy, ["invalid_retry"]),
    (step_name_too_long, ["invalid_step_name"]),
    (step_name_with_a_trailing_newline, ["invalid_step_name"]),
    (workflow_name_too_long, ["invalid_name"]),
    (backoff_not_a_backoff, ["invalid_retry"]),
    (timeout_of_centuries, ["invalid_timeout"]),
    (backoff_of_centuries, ["invalid_retry", "invalid_retry"]),  # its min and its max
    (wait_of_centuries, ["invalid_wait_duration"]),
    (deadline_of_centuries, ["invalid_deadline"]),
    (bad_output_key, ["invalid_output_key"]),
    (irreversible_and_compensatable, ["irreversible_and_compensatable"]),
    (compensate_on_irreversible, ["compensate_not_allowed"]),
    (compensate_on_builtin, ["compensate_on_builtin"]),
    (transaction_on_builtin, ["transaction_on_builtin"]),
    (positional_only_body, ["invalid_step_body"]),
    (unresolvable_annotation, ["invalid_step_body"]),
    (bad_log_level, ["invalid_log_level"]),
    (empty_log_message, ["invalid_log_message"]),
    (bad_wait_duration, ["invalid_wait_duration"]),
    (invalid_cron_expression, ["invalid_cron_expression"]),
    (reboot_cron_expression, ["invalid_cron_expression"]),
    (invalid_timezone, ["invalid_timezone"]),
    (invalid_idempotency, ["invalid_idempotency"]),
    (idempotency_on_manual, ["invalid_idempotency"]),
    (invalid_payload_default, ["invalid_payload_default"]),
    (invalid_payload_factory_default, ["invalid_payload_default"]),
    (cron_payload_requires_input, ["cron_payload_requires_input"]),
    (conflicting_payload_field, ["conflicting_payload_field"]),
    (payload_not_a_model, ["invalid_payload_model"]),
]


@pytest.mark.parametrize(("build", "codes"), RULES, ids=[build.__name__ for build, _ in RULES])
def test_rule_reports_exactly_its_issue(build: Callable[[], Workflow], codes: list[str]) -> None:
    assert _codes(build()) == codes


def test_signal_and_child_steps_time_out_onto_a_timeout_route() -> None:
    wf = _wf()
    paid = wf.signal("paid", timeout=60)
    ship = wf.child("ship", workflow="shipping", timeout=60, output="shipment")
    late = wf.log("late", message="too late")
    wf.chain(paid, ship, COMPLETE)
    wf.transition(paid, on="timeout", to=late)
    wf.transition(ship, on="timeout", to=late)
    definition = compile(wf)
    assert definition.has_timers
    assert definition.step("paid").options == {"signal": "paid", "payload": {}}
    assert definition.step("ship").options == {"workflow": "shipping", "payload_from": {}}
    mermaid = definition.to_mermaid()
    assert 'paid>"paid (signal paid)<br/>timeout 60s"]' in mermaid
    assert 'ship[["ship (child shipping)<br/>timeout 60s"]]' in mermaid


def test_issues_name_the_step_they_belong_to() -> None:
    with pytest.raises(DefinitionError) as raised:
        compile(empty_after())
    (issue,) = raised.value.issues
    assert issue.step == "a"
    assert "after=[]" in issue.message


def test_cycle_issue_shows_the_cycle_path() -> None:
    with pytest.raises(DefinitionError) as raised:
        compile(dependency_cycle())
    assert "b -> c -> b" in str(raised.value)


def test_every_problem_is_reported_at_once() -> None:
    wf = Workflow("bad name", triggers=[cron("tick", "nope", timezone="Nowhere/City")])

    @wf.step(retry=Retry(max_attempts=0), output="")
    def a() -> None: ...

    @wf.step(after=[a, "ghost"])
    def b() -> None: ...

    wf.transition(a, on="ok", to=b)
    with pytest.raises(DefinitionError) as raised:
        compile(wf)
    assert raised.value.codes == (
        "invalid_name",
        "invalid_cron_expression",
        "invalid_timezone",
        "invalid_retry",
        "invalid_output_key",
        "unknown_dependency",
        "activation_conflict",
    )
    message = str(raised.value)
    assert message.startswith("workflow 'bad name' has 7 problems:")
    assert "[unknown_dependency] step 'b': dependency 'ghost'" in message


def test_definition_error_is_a_value_error_under_the_root() -> None:
    from squidmesh_sdk import SquidmeshError

    with pytest.raises(SquidmeshError):
        compile(no_steps())
    with pytest.raises(ValueError, match="no_steps"):
        compile(no_steps())


def test_valid_cron_aliases_and_zones_compile() -> None:
    for expression in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "*/5 9-17 * * 1-5"):
        wf = _with_triggers(cron("tick", expression, timezone="Europe/Berlin", payload=Defaults))
        assert compile(wf).trigger("tick").expression == expression


def test_dynamic_defaults_are_accepted_for_matching_types() -> None:
    from squidmesh_sdk import now, today

    class Dated(BaseModel):
        day: date = Field(default_factory=today)
        at: str | None = None
        stamp: datetime = Field(default_factory=now)

    compile(_with_triggers(cron("tick", "@daily", payload=Dated)))


def test_retry_after_rejects_negative_non_finite_or_endless_delays() -> None:
    from squidmesh_sdk import RetryAfter

    assert RetryAfter(timedelta(seconds=3)).delay == 3.0
    assert str(RetryAfter(2)) == "retry requested after 2s"
    # 1e12 s ends after the year 9999: accepted, it failed the run when its retry was queued,
    # as "dispatch_failed" (OverflowError: date value out of range).
    for bad in (-1, float("nan"), float("inf"), 1e12, timedelta(days=365 * 200)):
        with pytest.raises(ValueError, match="finite number of seconds from 0 to 100 years"):
            RetryAfter(bad)


def test_error_routes_may_loop_back_through_a_wait_when_complete_stays_reachable() -> None:
    wf = _wf()
    start = wf.log("start", message="start")
    a = wf.log("a", message="a")
    fix = wf.wait("fix", duration=5)
    wf.chain(start, a, COMPLETE)
    wf.transition(a, on="error", to=fix)
    wf.chain(fix, a)
    definition = compile(wf)
    assert [edge.target for edge in definition.routes_from("fix", "ok")] == ["a"]
    assert definition.cyclic_steps == {"a", "fix"}


def test_one_graph_mixes_dependencies_routes_and_manual_steps() -> None:
    wf = _wf()

    @wf.step
    def validate() -> Branch:
        return Branch("large", {})

    @wf.step(after=[validate])
    def reserve() -> None: ...

    @wf.step(after=[validate])
    def charge() -> None: ...

    gate = wf.approval("gate", after=[validate], timeout=60)
    hold = wf.pause("hold")
    wf.transition(gate, on="timeout", to=hold)

    @wf.step(after=[reserve, charge, gate])
    def ship() -> None: ...

    definition = compile(wf)
    assert definition.shape == "mixed"
    assert definition.entry_steps == ("validate",)
    assert definition.step("ship").depends_on == ("reserve", "charge", "gate")
    assert not definition.single_path
    assert 'gate -.->|"timeout"| hold' in definition.to_mermaid()


def test_a_loop_back_to_the_first_step_starts_at_the_first_declared_step() -> None:
    wf = _wf()
    draft = wf.log("draft", message="draft")
    review = wf.approval("review")
    wf.chain(draft, review, COMPLETE)
    wf.transition(review, on="error", to=draft)
    definition = compile(wf)
    assert definition.entry_steps == ("draft",)
    assert definition.single_path
    assert definition.cyclic_steps == {"draft", "review"}


def test_parallel_entry_steps_and_steps_without_routes_end_their_path() -> None:
    wf = _wf()
    a = wf.log("a", message="a")
    wf.log("b", message="b")
    c = wf.log("c", message="c")
    wf.chain(a, c)
    definition = compile(wf)
    assert definition.entry_steps == ("a", "b")
    assert definition.routes_from("c") == ()
    assert not definition.single_path


def test_label_and_condition_routes_are_exported_as_data() -> None:
    wf = _wf()

    @wf.step
    def check() -> None: ...

    review = wf.approval("review")
    big = wf.log("big", message="big")
    small = wf.log("small", message="small")
    wf.transition(check, on="ok", to=review, when=when("output.total").greater_than(1000))
    wf.transition(check, on="ok", to=small)
    wf.transition(check, on="vip", to=big)
    definition = compile(wf)
    routes = [edge.to_dict() for edge in definition.routes_from("check")]
    assert routes == [
        {
            "source": "check",
            "target": "review",
            "kind": "ok",
            "when": {"path": "output.total", "op": "greater_than", "value": 1000},
        },
        {"source": "check", "target": "small", "kind": "ok"},
        {"source": "check", "target": "big", "kind": "branch", "label": "vip"},
    ]
    mermaid = definition.to_mermaid()
    assert 'check -->|"ok: output.total > 1000"| review' in mermaid
    assert "check -->|vip| big" in mermaid


def test_duplicate_names_keep_declaration_order_for_the_rest() -> None:
    wf = _wf()
    a = wf.log("a", message="a")
    b = wf.log("b", message="b")
    wf.log("a", message="again")
    wf.chain(a, b, COMPLETE)
    assert _codes(wf) == ["duplicate_step"]


def test_on_parent_close_is_in_the_definition_only_when_not_the_default() -> None:
    def parent(**options: Any) -> Workflow:
        wf = _wf("parent")
        wf.chain(wf.child("ship", workflow="shipping", **options), COMPLETE)
        return wf

    plain = compile(parent())
    assert "on_parent_close" not in plain.steps["ship"].options
    # Declared before the option existed or with the default: the same fingerprint (and so
    # the same derived version, which runs already started are pinned to).
    assert compile(parent(on_parent_close="cancel")).fingerprint == plain.fingerprint
    abandoning = compile(parent(on_parent_close="abandon"))
    assert abandoning.steps["ship"].options["on_parent_close"] == "abandon"
    assert abandoning.to_dict()["steps"][0]["options"]["on_parent_close"] == "abandon"
    assert abandoning.fingerprint != plain.fingerprint
