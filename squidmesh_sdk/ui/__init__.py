"""The web run inspector: runs, their graph and history, workflows and jobs, in a browser.

```python
from squidmesh_sdk.ui import create_app, redact_keys

inspector = create_app(client, auth=current_operator, redact=redact_keys("*password*"))
host_app.mount("/squidmesh", inspector)       # FastAPI / Starlette
```

or ``squidmesh --app myapp:client ui`` to serve it alone on http://127.0.0.1:8787. It needs
the optional dependencies of the ``ui`` extra (``pip install 'squidmesh-sdk[ui]'``: Starlette,
Jinja2, uvicorn); ``import squidmesh_sdk`` never imports them. See ``docs/inspector.md``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "squidmesh_sdk.ui needs the optional 'ui' dependencies (Starlette, Jinja2, uvicorn): "
        "pip install 'squidmesh-sdk[ui]'"
    ) from exc

from squidmesh_sdk.ui.app import create_app
from squidmesh_sdk.ui.config import Actor, AuthHook
from squidmesh_sdk.ui.redaction import Redactor, redact_keys

__all__ = ["Actor", "AuthHook", "Redactor", "create_app", "redact_keys"]
