"""The samples as an app for the ``squidmesh`` CLI: ``squidmesh --app samples.app:client ...``.

The database is ``$SQUIDMESH_SAMPLES_DATABASE``, or the embedded one README command (1) uses.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from samples import SAMPLES
from squidmesh_sdk import Client, DatabaseExecutor, Workflow

DEFAULT_DATABASE = f"sqlite:///{Path(__file__).resolve().parents[1] / '.samples' / 'squidmesh.db'}"


def workflows() -> list[Workflow]:
    """Every sample workflow."""
    found = [importlib.import_module(f"samples.{name}").workflow for name in SAMPLES]
    return [workflow for workflow in found if isinstance(workflow, Workflow)]


def client() -> Client:
    """A client on the samples' database, queueing work in it."""
    database = os.environ.get("SQUIDMESH_SAMPLES_DATABASE", DEFAULT_DATABASE)
    return Client(database, workflows(), executor=DatabaseExecutor())
