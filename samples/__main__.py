"""Compile a sample workflow and print its graph.

Usage: ``python -m samples [NAME] [--json]`` (NAME defaults to ``saga_checkout``;
``python -m samples --list`` lists the samples).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from samples import SAMPLES
from squidmesh_sdk import Workflow, compile


def load(name: str) -> Workflow:
    module = importlib.import_module(f"samples.{name}")
    workflow = module.workflow
    assert isinstance(workflow, Workflow)
    return workflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samples", description=__doc__)
    parser.add_argument("name", nargs="?", default="saga_checkout", choices=SAMPLES)
    parser.add_argument("--json", action="store_true", help="print the JSON graph")
    parser.add_argument("--list", action="store_true", help="list the samples")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SAMPLES))
        return 0
    definition = compile(load(args.name))
    if args.json:
        print(definition.to_json())
        return 0
    count = len(definition.steps)
    print(f"workflow {definition.name} ({definition.shape}), {count} step{'s' * (count != 1)}")
    print(f"triggers: {', '.join(definition.triggers)}; fingerprint {definition.fingerprint}")
    print()
    print(definition.to_mermaid(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
