"""docs/authoring.md: transition routes (the payment recovery shape)."""

from squidmesh_sdk import COMPLETE, Workflow, manual

wf = Workflow("routes_guide", triggers=[manual("go")])


@wf.step
def load_invoice() -> dict: ...


@wf.step
def check_gateway_status() -> dict: ...


@wf.step
def notify_customer() -> dict: ...


@wf.step
def issue_gateway_credit() -> dict: ...


wf.chain(load_invoice, check_gateway_status, notify_customer, COMPLETE)  # ok routes
wf.transition(check_gateway_status, on="error", to=issue_gateway_credit, recovery="compensation")
wf.chain(issue_gateway_credit, COMPLETE)
