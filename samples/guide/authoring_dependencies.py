"""docs/authoring.md: a dependency graph (fan-out, fan-in)."""

from pydantic import BaseModel

from squidmesh_sdk import Workflow, manual


class Notify(BaseModel):
    account_id: str
    invoice_id: str


wf = Workflow("dependencies_guide", triggers=[manual("go", payload=Notify)])


@wf.step
def load_account(account_id: str) -> dict: ...


@wf.step
def load_invoice(invoice_id: str) -> dict: ...


@wf.step(after=[load_account, load_invoice])
def prepare_notification(account: dict, invoice: dict) -> dict: ...
