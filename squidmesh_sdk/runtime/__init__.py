"""The durable runtime: runs a compiled workflow graph step by step against the store.

Layers below it: :mod:`squidmesh_sdk.port` (the executor protocol it dispatches through) and
:mod:`squidmesh_sdk.store` (persistence). The concrete executors sit above it, and
:class:`squidmesh_sdk.Client` wires the two (docs/architecture.md).
"""
