"""Delivering step work: the :class:`Executor` protocol and the executors that ship with it."""

from squidmesh_sdk.executors.base import Executor, ExecutorBinding
from squidmesh_sdk.executors.inline import InlineExecutor

__all__ = ["Executor", "ExecutorBinding", "InlineExecutor"]
