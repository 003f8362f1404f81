"""docs/runtime.md: testing a workflow with the fake clock."""

from samples.guide.authoring_checkout import checkout
from squidmesh_sdk.testing import WorkflowEnvironment


def test_checkout_completes() -> None:
    with WorkflowEnvironment([checkout]) as env:
        run = env.start_run(checkout, {"order_id": "o-1", "amount_cents": 1200})
        env.run_until_idle()  # jumps the clock over retry delays and waits
        assert env.client.inspect_run(run.id).status == "completed"
