"""The durable runtime: runs a compiled workflow graph step by step against the store.

Layers below it: :mod:`squidmesh_sdk.store` (persistence) and :mod:`squidmesh_sdk.executors`
(delivery). :class:`squidmesh_sdk.Client` is the public face over it.
"""
