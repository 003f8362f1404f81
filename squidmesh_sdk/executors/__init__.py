"""Delivering step work: the :class:`Executor` protocol and the executors that ship with it."""

from squidmesh_sdk.executors.base import Executor, ExecutorBinding
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.executors.inline import InlineExecutor
from squidmesh_sdk.executors.worker import Worker

__all__ = ["DatabaseExecutor", "Executor", "ExecutorBinding", "InlineExecutor", "Worker"]
