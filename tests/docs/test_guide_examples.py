"""The examples of the guides (samples/guide/) run, so the code the docs show works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samples.guide import (
    authoring_branches,
    authoring_checkout,
    authoring_dependencies,
    authoring_inputs,
    authoring_routes,
    authoring_triggers,
    cron_activate,
    cron_declare,
    flow_control,
    runtime_testing,
    runtime_tour,
    runtime_versions,
)
from squidmesh_sdk import (
    COMPLETE,
    Client,
    DefinitionError,
    InlineExecutor,
    Worker,
    Workflow,
    compile,
    manual,
)
from squidmesh_sdk.testing import WorkflowEnvironment

ROOT = Path(__file__).parents[2]


def test_the_branching_examples_take_their_routes() -> None:
    with WorkflowEnvironment([authoring_branches.refunds, authoring_branches.articles]) as env:
        small = env.start_run("refunds", {"amount_cents": 900, "customer_tier": "gold"})
        done = env.client.inspect_run(small.id, include_history=True)
        assert done.status == "completed"
        assert {sr.step: sr.status for sr in done.step_runs or ()} == {
            "assess": "completed",
            "pay_refund": "completed",
            "review": "skipped",
            "escalate": "skipped",
        }
        new_customer = env.start_run("refunds", {"amount_cents": 900, "customer_tier": "new"})
        assert env.client.inspect_run(new_customer.id).current_step == "review"
        env.advance(8 * 3600 + 1)
        timed_out = env.client.inspect_run(new_customer.id, include_history=True)
        assert timed_out.status == "completed"
        assert [sr.step for sr in timed_out.step_runs or ()][:3] == ["assess", "review", "escalate"]
        article = env.start_run("articles", {"title": "Graphs"})
        env.client.reject_run(article.id, actor="editor")
        env.client.approve_run(article.id, actor="editor")
        published = env.client.inspect_run(article.id, include_history=True)
        assert published.status == "completed"
        assert published.context["revision"] == 2
        assert [sr.step for sr in published.step_runs or ()] == [
            "write_draft",
            "editor_review",
            "write_draft@2",
            "editor_review@2",
            "publish",
        ]


def test_the_authoring_examples_compile() -> None:
    assert authoring_checkout.mermaid.startswith("flowchart TD")
    routes = compile(authoring_routes.wf).routes_from("check_gateway_status", "error")
    assert [edge.target for edge in routes] == ["issue_gateway_credit"]
    assert compile(authoring_dependencies.wf).step("prepare_notification").depends_on == (
        "load_account",
        "load_invoice",
    )
    assert list(compile(authoring_triggers.digest).triggers) == ["manual_digest", "daily_digest"]


def test_the_inputs_example_runs_and_its_typo_is_reported_as_the_guide_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    guide = authoring_inputs
    with WorkflowEnvironment([guide.fulfil]) as env:
        run = env.start_run(guide.fulfil, {"order_id": "o-1", "amount_cents": 1200})
        assert env.client.inspect_run(run.id).status == "completed"
    assert capsys.readouterr().out == "order o-1 shipped: trk_res_o-1\n"

    def ship(reservation: str, charge_id: str) -> dict[str, str]: ...

    typo = Workflow("fulfil_guide", triggers=[manual("order", payload=guide.Order)])
    typo.chain(
        typo.step(guide.reserve.__wrapped__),  # type: ignore[attr-defined]
        typo.step(guide.charge.__wrapped__),  # type: ignore[attr-defined]
        typo.step(output="shipment")(ship),
        typo.step(guide.notify.__wrapped__),  # type: ignore[attr-defined]
        COMPLETE,
    )
    with pytest.raises(DefinitionError) as raised:
        compile(typo)
    (shown,) = [
        line
        for line in (ROOT / "docs/authoring.md").read_text().splitlines()
        if line.startswith("- [unknown_input]")
    ]
    assert str(raised.value).splitlines()[1:] == [shown]


def test_the_runtime_tour_completes_a_run(tmp_path: Path) -> None:
    run = runtime_tour.tour(f"sqlite:///{tmp_path}/tour.db")
    assert run.status == "completed"
    assert [sr.step for sr in run.step_runs or ()] == ["reserve_inventory", "capture_payment"]


def test_the_versions_example_finishes_old_runs_on_the_old_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/versions.db"
    # Before the deploy: a run of version 1 is queued.
    with Client(url, [runtime_versions.v1], executor=runtime_versions.DatabaseExecutor()) as old:
        old.migrate()
        queued = old.start_run("fulfilment")
    with runtime_versions.client(url) as client, Worker(client, poll_interval=0.05):
        fresh = client.start_run("fulfilment")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            client.inspect_run(r.id).status != "completed" for r in (queued, fresh)
        ):
            time.sleep(0.05)
        old_run = client.inspect_run(queued.id, include_history=True)
        new_run = client.inspect_run(fresh.id, include_history=True)
    assert (old_run.definition_version, old_run.status) == ("1", "completed")
    assert [sr.step for sr in old_run.step_runs or ()] == ["pick", "ship"]
    assert (new_run.definition_version, new_run.status) == ("2", "completed")
    assert [sr.step for sr in new_run.step_runs or ()] == ["pick", "wrap", "ship"]


def test_the_runtime_testing_example_passes() -> None:
    runtime_testing.test_checkout_completes()


def test_the_cron_examples_start_one_run_per_window(tmp_path: Path) -> None:
    with Client(
        f"sqlite:///{tmp_path}/cron.db", [cron_declare.digest], executor=InlineExecutor()
    ) as client:
        client.migrate()
        first = cron_activate.activate(client)
        again = cron_activate.activate(client)
        assert (first.outcome, again.outcome) == ("started", "duplicate")
        assert again.run.id == first.run.id
        assert client.inspect_run(first.run.id).status == "completed"


def test_the_worker_example_serves_until_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "samples.guide.workers_serve", f"sqlite:///{tmp_path}/w.db"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "w.db").exists():  # migrated: the worker is up
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the worker example did not start")
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_the_flow_control_guide_runs_both_syncs_to_completion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert flow_control.main(f"sqlite:///{tmp_path / 'flow.db'}") == ["completed", "completed"]
    assert "RateLimit(count=100, per=datetime.timedelta(seconds=60))" in capsys.readouterr().out
    definition = compile(flow_control.sync)
    assert definition.concurrency_of("fetch") == flow_control.ConcurrencyLimit(
        "payload.customer_id", limit=2
    )
    push = definition.concurrency_of("push")
    assert push is not None
    assert (push.key, push.scope) == ("context.account", "partner_api")
