"""squidmesh graph: Mermaid and JSON pictures of a registered workflow."""

from __future__ import annotations

import json

import pytest

from samples import manual_approval
from squidmesh_sdk import compile
from squidmesh_sdk.cli import EXIT_USAGE
from tests.cli.conftest import use_app
from tests.cli.support import Cli, assert_one_error_line, stable_json


@pytest.fixture(autouse=True)
def _app(monkeypatch: pytest.MonkeyPatch) -> None:
    use_app(monkeypatch, "sqlite:///unused.db")  # graph never opens the database


def test_graph_prints_mermaid_by_default(cli: Cli) -> None:
    result = cli("graph", "manual_approval")
    assert (result.code, result.err) == (0, "")
    assert result.out == compile(manual_approval.workflow).to_mermaid()
    assert cli("graph", "manual_approval", "--format", "mermaid").out == result.out


def test_graph_json_is_the_definition_with_sorted_keys(cli: Cli) -> None:
    result = cli("graph", "manual_approval", "--format", "json")
    definition = compile(manual_approval.workflow)
    assert stable_json(result.out) == json.loads(definition.to_json())
    assert stable_json(result.out)["fingerprint"] == definition.fingerprint


def test_graph_of_an_unknown_workflow(cli: Cli) -> None:
    message = assert_one_error_line(cli("graph", "nope"), EXIT_USAGE)
    assert message == (
        "unknown workflow 'nope'; the app registers: "
        "cancellable_wait, failing, holding, manual_approval, transfer"
    )


def test_graph_usage_errors(cli: Cli) -> None:
    assert_one_error_line(cli("graph", "transfer", "--format", "png"), EXIT_USAGE, "invalid choice")
    assert_one_error_line(cli("graph"), EXIT_USAGE, "required: WORKFLOW")
