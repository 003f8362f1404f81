"""docs/authoring.md: where a step's inputs come from, checked when the workflow compiles."""

from dataclasses import dataclass
from typing import TypedDict

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Workflow, manual


class Order(BaseModel):
    order_id: str
    amount_cents: int


class Reservation(TypedDict):
    reservation_id: str


@dataclass
class Charge:
    charge_id: str
    amount_cents: int


fulfil = Workflow("fulfil_guide", triggers=[manual("order", payload=Order)])


@fulfil.step
def reserve(order_id: str) -> Reservation:  # declares reservation_id
    return {"reservation_id": f"res_{order_id}"}


@fulfil.step
def charge(order_id: str, amount_cents: int) -> Charge:  # declares charge_id, amount_cents
    return Charge(charge_id=f"ch_{order_id}", amount_cents=amount_cents)


@fulfil.step(output="shipment")  # declares shipment, whatever it returns
def ship(reservation_id: str, charge_id: str) -> dict:
    return {"tracking": f"trk_{reservation_id}"}


@fulfil.step
def notify(order_id: str, shipment: dict) -> None:
    print(f"order {order_id} shipped: {shipment['tracking']}")


fulfil.chain(reserve, charge, ship, notify, COMPLETE)
