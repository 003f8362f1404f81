"""docs/observability.md: a span attribute from inside a step."""

from opentelemetry import trace
from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Workflow, manual


class Order(BaseModel):
    order_id: str


wf = Workflow("observed_guide", triggers=[manual("go", payload=Order)])


@wf.step
def charge(order_id: str) -> dict:  # with `from opentelemetry import trace`
    trace.get_current_span().set_attribute("app.order_id", order_id)
    return {"charged": order_id}


wf.chain(charge, COMPLETE)
