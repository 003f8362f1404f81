"""The executors that ship with squidmesh.

The protocol they implement, and what they are handed when bound, is :mod:`squidmesh_sdk.port`.
"""

from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.executors.inline import InlineExecutor
from squidmesh_sdk.executors.worker import Worker
from squidmesh_sdk.port.executor import Executor, ExecutorBinding

__all__ = ["DatabaseExecutor", "Executor", "ExecutorBinding", "InlineExecutor", "Worker"]
