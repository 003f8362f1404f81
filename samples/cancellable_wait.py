"""Cancellable wait: a durable timer followed by a log step; cancel the run while it waits."""

from __future__ import annotations

from datetime import timedelta

from squidmesh_sdk import COMPLETE, Workflow, manual

workflow = Workflow("cancellable_wait", triggers=[manual("cancellable_wait")])

wait_for_cancellation = workflow.wait("wait_for_cancellation", duration=timedelta(seconds=10))
record_delivery = workflow.log("record_delivery", message="wait finished; delivering")

workflow.chain(wait_for_cancellation, record_delivery, COMPLETE)
