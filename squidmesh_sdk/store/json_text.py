"""JSON text as ``json.dumps`` and ``json.loads`` make and read it, for the hot path.

``json.dumps(value)`` builds a new C encoder at every call (``JSONEncoder.iterencode`` makes
one per call, to give it a fresh set of the containers being encoded), and ``json.loads``
matches two regular expressions around the C scanner's work: a step writes and reads a dozen
JSON values, and these layers cost it more than the C work they wrap. :func:`dumps` uses one
C encoder for every call, made without the check for circular references (a container that
contains itself still fails: the C encoder's recursion limit raises ``RecursionError``), and
:func:`loads` calls the C scanner directly, falling back to ``json.loads`` for any text the
scanner does not take whole (leading or trailing whitespace, text that is not JSON), so that
what is returned or raised is what ``json.loads`` returns or raises.

Without the C accelerator (another Python implementation), both are ``json``'s own.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import json.scanner
from collections.abc import Callable, Sequence
from typing import Any, cast

__all__ = ["ENCODER", "dumps", "loads", "loads_bytes"]


def _not_serializable(value: object) -> object:
    # What JSONEncoder.default raises.
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _encoder() -> Callable[[Any, int], Sequence[str]] | None:
    # Not in typeshed: the C accelerator json.encoder imports when it can (None without).
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - CPython has the accelerator
        return None
    # json.dumps's defaults: ASCII output, ", " and ": ", keys unsorted and never skipped,
    # NaN and infinities written as JavaScript does (strict_json refuses them before).
    return cast(
        "Callable[[Any, int], Sequence[str]]",
        make_encoder(
            None,  # no set of containers being encoded: no circular-reference check
            _not_serializable,
            json.encoder.encode_basestring_ascii,
            None,
            ": ",
            ", ",
            False,
            False,
            True,
        ),
    )


ENCODER = _encoder()
"""``json.dumps``'s C encoder, as :func:`dumps` uses it: ``"".join(ENCODER(value, 0))`` is
``dumps(value)`` (``None`` where CPython lacks the accelerator). Generated conversions call it
without :func:`dumps`'s frame."""


def _fast_dumps() -> Callable[[Any], str]:
    encode = ENCODER
    if encode is None:  # pragma: no cover - CPython has the accelerator
        return json.dumps
    join = "".join

    def dumps(value: Any) -> str:
        """``json.dumps(value)``."""
        return join(encode(value, 0))

    return dumps


def _fast_loads() -> Callable[[str], Any]:
    make_scanner = getattr(json.scanner, "c_make_scanner", None)
    if make_scanner is None:  # pragma: no cover - CPython has the accelerator
        return json.loads
    scan = make_scanner(json.decoder.JSONDecoder())
    slow = json.loads

    def loads(text: str) -> Any:
        """``json.loads(text)`` for text (``str``)."""
        try:
            value, end = scan(text, 0)
        except StopIteration:
            return slow(text)  # not a JSON value at the start: json.loads says why
        return value if end == len(text) else slow(text)

    return loads


dumps = _fast_dumps()
loads = _fast_loads()


def loads_bytes(data: bytes | str) -> Any:
    """``json.loads(data)`` for bytes (what psycopg hands a JSON loader), or text.

    ``json.loads`` reads bytes in the encoding ``json.detect_encoding`` finds; bytes in any
    but UTF-8, bytes that are not UTF-8 after all, and anything but ``bytes`` and ``str`` go
    to ``json.loads`` itself. A function of the module, not a closure: psycopg makes a loader
    class per function it is given, and warns about closures.
    """
    if isinstance(data, str):
        return loads(data)
    if data.__class__ is not bytes or (
        not _plainly_utf8(data) and json.detect_encoding(data) != "utf-8"
    ):
        return json.loads(data)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = None
    if text is None:  # json.loads raises the same error, without this one as its context
        return json.loads(data)
    return loads(text)


_NOT_FIRST = frozenset((0x00, 0xEF, 0xFE, 0xFF))
"""First bytes ``json.detect_encoding`` looks at: a NUL (UTF-16 or UTF-32) or a BOM's."""


def _plainly_utf8(data: bytes) -> bool:
    """What ``json.detect_encoding`` says is UTF-8, told without its Python (most JSON).

    It finds another encoding only from a BOM (starting with one of :data:`_NOT_FIRST`) or a
    NUL among the first bytes; when the first two bytes are neither, it says UTF-8. ``False``
    means only that it has to be asked.
    """
    return len(data) >= 2 and data[0] not in _NOT_FIRST and data[1] != 0
