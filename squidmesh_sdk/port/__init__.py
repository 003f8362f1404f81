"""The executor port: the contract between the runtime and whatever delivers its work.

It holds the :class:`~squidmesh_sdk.port.executor.Executor` protocol and what an executor is
handed when bound (:mod:`~squidmesh_sdk.port.executor`), the JSON job payloads and their
parsing (:mod:`~squidmesh_sdk.port.payloads`), what a queue contributes to executing a job
(:mod:`~squidmesh_sdk.port.delivery`) and the worker continuation hook
(:mod:`~squidmesh_sdk.port.continuation`). It sits below the runtime and imports nothing above
the store: the runtime depends on it, the executors implement it, the client wires them.
"""
