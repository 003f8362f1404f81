"""docs/authoring.md: a first workflow."""

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Retry, StepContext, Workflow, compile, manual


class Checkout(BaseModel):
    order_id: str
    amount_cents: int


checkout = Workflow("saga_checkout", triggers=[manual("checkout", payload=Checkout)])


@checkout.step
def reserve_inventory(order_id: str) -> dict:
    return {"reservation": {"id": f"res_{order_id}"}}


@reserve_inventory.compensate
def release_inventory(reservation: dict, ctx: StepContext) -> dict:
    return {"released": reservation["id"]}


@checkout.step(retry=Retry(max_attempts=2))
def capture_payment(order_id: str, amount_cents: int) -> dict: ...


checkout.chain(reserve_inventory, capture_payment, COMPLETE)
definition = compile(checkout)  # raises DefinitionError listing every problem
mermaid = definition.to_mermaid()  # the graph as a Mermaid flowchart
