"""JSON from untrusted text, parsed within bounds that hold before Python's parser runs.

Python's :mod:`json` recurses once per nesting level (``[[[[…`` 100,000 deep is a ``RecursionError``),
turns an integer token into an ``int`` however long it is (past 4,300 digits, a ``ValueError`` from
deep inside), and accepts ``NaN`` and ``Infinity``, which are not JSON. :func:`loads` refuses all of
these with a :class:`~docpipe.errors.BadRequest` and a stable code:

- ``request.too_deep``: arrays and objects nested more than ``max_depth`` deep, counted by one scan
  of the text, without recursion, before anything is parsed;
- ``request.number_too_long``: a number token longer than ``max_number_chars``;
- ``request.invalid_json``: anything else that is not one JSON value, a key given twice (parsers
  disagree on which one wins), or a string with a lone surrogate escape (``"\\ud800"``: no UTF-8 for it).

The depth scan reads strings the way the parser does, so up to the first place the text stops being
JSON the two agree on the depth; from there the parser raises before it could recurse any deeper.
"""

from __future__ import annotations

import json
import re
from typing import Any

from docpipe.errors import BadRequest

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 32

# A whole JSON string (escapes included), or one bracket: a bracket inside a string is not structure.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[][{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Refused(Exception):
    def __init__(self, error: BadRequest) -> None:
        super().__init__(error.message)
        self.error = error


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar), found without recursion."""
    deepest = level = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            level += 1
            deepest = max(deepest, level)
        elif token in ("]", "}"):
            level -= 1
    return deepest


def loads(text: str, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """One JSON value from ``text``, or :class:`BadRequest` with ``request.too_deep``,
    ``request.number_too_long`` or ``request.invalid_json``."""
    if depth(text) > max_depth:
        raise BadRequest(f"The JSON is nested more than {max_depth} deep.", code="request.too_deep")

    def number(parse: type[int] | type[float]) -> Any:
        def bounded(token: str) -> int | float:
            if len(token) > max_number_chars:
                raise _Refused(
                    BadRequest(
                        f"A number in the JSON is longer than {max_number_chars} characters.",
                        code="request.number_too_long",
                    )
                )
            return parse(token)

        return bounded

    def constant(token: str) -> Any:
        raise _Refused(BadRequest(f"{token} is not a JSON value.", code="request.invalid_json"))

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) != len(pairs):
            raise _Refused(BadRequest("A key is given twice in one JSON object.", code="request.invalid_json"))
        return value

    try:
        value = json.loads(
            text,
            parse_int=number(int),
            parse_float=number(float),
            parse_constant=constant,
            object_pairs_hook=unique_keys,
        )
    except _Refused as refused:
        raise refused.error from None
    except ValueError as exc:  # JSONDecodeError, and anything a hook let through
        raise BadRequest(f"The body is not valid JSON: {exc}", code="request.invalid_json") from None
    if _SURROGATE_ESCAPE.search(text) and not _encodable(value):
        raise BadRequest("A string in the JSON is not valid Unicode.", code="request.invalid_json")
    return value


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
