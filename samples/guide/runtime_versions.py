"""docs/runtime.md: deploying a new version of a workflow while runs of the old one go on."""

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, Workflow, manual


def fulfilment(version: str, *, gift_wrap: bool) -> Workflow:
    wf = Workflow("fulfilment", triggers=[manual("order_placed")], version=version)

    @wf.step
    def pick() -> dict[str, bool]:
        return {"picked": True}

    @wf.step
    def ship() -> dict[str, bool]:
        return {"shipped": True}

    if gift_wrap:  # version 2 wraps before shipping

        @wf.step
        def wrap() -> dict[str, bool]:
            return {"wrapped": True}

        wf.chain(pick, wrap, ship, COMPLETE)
    else:
        wf.chain(pick, ship, COMPLETE)
    return wf


# Deploy version 2 beside version 1: runs started on 1 finish on 1, new runs start on 2
# (the version listed last). Drop version 1 once `squidmesh runs list` shows none in flight.
v1 = fulfilment("1", gift_wrap=False)
v2 = fulfilment("2", gift_wrap=True)


def client(database_url: str) -> Client:
    return Client(database_url, [v1, v2], executor=DatabaseExecutor())
