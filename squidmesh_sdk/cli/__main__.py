"""``python -m squidmesh_sdk.cli``: the same as the ``squidmesh`` script."""

from squidmesh_sdk.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
