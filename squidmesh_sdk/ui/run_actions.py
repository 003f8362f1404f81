"""The operator actions the Run page offers, keyed by ``explain_run``'s next-action names.

``explain_run`` says what can be done now (``next_actions``); the page shows each action
found here as a form with a button, and any other (``wait_for_retry``, ``deploy_version``,
an action a later release adds) as a plain hint. Adding a button for a new action is one
entry here. Every action passes the authenticated actor to the client, which records it in
the run's audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from squidmesh_sdk import errors
from squidmesh_sdk.client import Client
from squidmesh_sdk.store.records import Run
from squidmesh_sdk.ui.config import Actor

__all__ = ["RUN_ACTIONS", "Field", "RunAction"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """An input of an action's form."""

    name: str
    label: str
    kind: Literal["text", "checkbox"] = "text"
    placeholder: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAction:
    """One action on a run.

    Attributes:
        name: The next-action name ``explain_run`` uses (``approve_run``...).
        label: The button's text.
        done: What the page says once it is done (``approved``...).
        style: ``primary``, ``danger`` or ``plain``: how the button looks.
        fields: The form's inputs besides the CSRF token.
        per_step: A decision at one waiting step: when several steps of the run wait at
            once (``explain_run``'s ``waiting_steps``), the page offers one form per step,
            each naming its step.
        perform: Calls the client: ``(client, run_id, actor, form) -> run``; the run returned
            is the page shown next (a replay's new run).
    """

    name: str
    label: str
    done: str
    style: str
    fields: tuple[Field, ...]
    per_step: bool = False
    perform: Callable[[Client, str, Actor, Mapping[str, str]], Run]


def _text(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def _signal(client: Client, run_id: str, form: Mapping[str, str]) -> Run:
    """Send the signal the form names (default: the one the run waits for), then the run.

    The payload field holds a JSON object; text that is not one is refused with
    :class:`~squidmesh_sdk.errors.InvalidArgument`, and nothing is sent.
    """
    name = _text(form, "signal")
    if name is None:
        waiting = client.explain_run(run_id).details.get("signal")
        name = waiting if isinstance(waiting, str) else ""
    text = _text(form, "payload")
    payload = None
    if text is not None:
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise errors.InvalidArgument("payload", f"must be a JSON object ({exc})") from None
        if not isinstance(payload, dict):
            raise errors.InvalidArgument("payload", "must be a JSON object")
    client.signal(run_id, name, payload, idempotency_key=_text(form, "idempotency_key"))
    return client.inspect_run(run_id)


COMMENT = Field(name="comment", label="Comment", placeholder="optional, kept in the audit trail")
REASON = Field(name="reason", label="Reason", placeholder="optional, kept in the audit trail")

RUN_ACTIONS: dict[str, RunAction] = {
    action.name: action
    for action in (
        RunAction(
            name="approve_run",
            label="Approve",
            done="approved",
            style="primary",
            fields=(COMMENT,),
            per_step=True,
            perform=lambda client, run_id, actor, form: client.approve_run(
                run_id, actor=actor, comment=_text(form, "comment"), step=_text(form, "step")
            ),
        ),
        RunAction(
            name="reject_run",
            label="Reject",
            done="rejected",
            style="danger",
            fields=(COMMENT,),
            per_step=True,
            perform=lambda client, run_id, actor, form: client.reject_run(
                run_id, actor=actor, comment=_text(form, "comment"), step=_text(form, "step")
            ),
        ),
        RunAction(
            name="unblock_run",
            label="Unblock",
            done="unblocked",
            style="primary",
            fields=(COMMENT,),
            per_step=True,
            perform=lambda client, run_id, actor, form: client.unblock_run(
                run_id, actor=actor, comment=_text(form, "comment"), step=_text(form, "step")
            ),
        ),
        RunAction(
            name="signal_run",
            label="Send signal",
            done="signalled",
            style="primary",
            fields=(
                Field(name="signal", label="Signal", placeholder="the one the run waits for"),
                Field(name="payload", label="Payload", placeholder='JSON, e.g. {"amount": 10}'),
                Field(
                    name="idempotency_key",
                    label="Idempotency key",
                    placeholder="optional: the same key is one signal",
                ),
            ),
            perform=lambda client, run_id, actor, form: _signal(client, run_id, form),
        ),
        RunAction(
            name="retry_run",
            label="Retry from the failed step",
            done="retried",
            style="primary",
            fields=(
                REASON,
                Field(
                    name="from_step",
                    label="From step",
                    placeholder="optional: an earlier step the run reached",
                ),
                Field(
                    name="allow_irreversible",
                    label="even if irreversible or non-compensatable steps run again",
                    kind="checkbox",
                ),
            ),
            perform=lambda client, run_id, actor, form: client.retry_run(
                run_id,
                actor=actor,
                reason=_text(form, "reason"),
                from_step=_text(form, "from_step"),
                allow_irreversible=form.get("allow_irreversible") == "on",
            ),
        ),
        RunAction(
            name="cancel_run",
            label="Cancel run",
            done="cancelled",
            style="danger",
            fields=(REASON,),
            perform=lambda client, run_id, actor, form: client.cancel_run(
                run_id, actor=actor, reason=_text(form, "reason")
            ),
        ),
        RunAction(
            name="replay_run",
            label="Replay",
            done="replayed",
            style="plain",
            fields=(
                REASON,
                Field(
                    name="allow_irreversible",
                    label="even after irreversible or non-compensatable steps",
                    kind="checkbox",
                ),
            ),
            perform=lambda client, run_id, actor, form: client.replay_run(
                run_id,
                actor=actor,
                reason=_text(form, "reason"),
                allow_irreversible=form.get("allow_irreversible") == "on",
            ),
        ),
    )
}
