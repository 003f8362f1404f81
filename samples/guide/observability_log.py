"""docs/observability.md: structured logs from inside a step."""

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, StepContext, Workflow, manual


class Order(BaseModel):
    order_id: str


wf = Workflow("logged_guide", triggers=[manual("go", payload=Order)])


@wf.step
def charge(order_id: str, ctx: StepContext) -> dict:
    ctx.logger.info("charging", extra={"amount_cents": 4200})
    # record.run_id, record.workflow, record.step == "charge", record.attempt, record.amount_cents


wf.chain(charge, COMPLETE)
