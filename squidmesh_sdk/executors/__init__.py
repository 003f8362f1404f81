"""Delivering step work: the :class:`Executor` protocol and the executors that ship with it."""

from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.executors.inline import InlineExecutor
from squidmesh_sdk.executors.worker import Worker
from squidmesh_sdk.port.executor import Executor, ExecutorBinding

__all__ = ["DatabaseExecutor", "Executor", "ExecutorBinding", "InlineExecutor", "Worker"]
