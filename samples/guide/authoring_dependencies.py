"""docs/authoring.md: a dependency graph (fan-out, fan-in)."""

from squidmesh_sdk import Workflow, manual

wf = Workflow("dependencies_guide", triggers=[manual("go")])


@wf.step
def load_account(account_id: str) -> dict: ...


@wf.step
def load_invoice(invoice_id: str) -> dict: ...


@wf.step(after=[load_account, load_invoice])
def prepare_notification(account: dict, invoice: dict) -> dict: ...
