"""Limits on JSON documents, checked on the raw text before a parser sees it, and strict parsing.

Python's json module recurses once per nesting level (a deep document raises RecursionError) and
refuses integers of more than 4,300 digits only after reading them; it also accepts NaN, Infinity
and numbers such as 1e400 that become float infinity. check_limits() refuses deep nesting and long
numbers in one regular-expression pass that never recurses; parse() adds the strict rest.
"""

from __future__ import annotations

import functools
import json
import math
import re

from apex.errors import BadRequestError

MAX_DEPTH = 32
"""Nesting levels of arrays and objects a management body may have."""

MAX_NUMBER_LENGTH = 1000
"""Characters of one number literal (digits, sign, point and exponent)."""


@functools.lru_cache(maxsize=8)
def _tokens(max_number_length: int) -> re.Pattern[bytes]:
    """A string (escapes included, even unterminated), a bracket, or a run of number characters
    longer than the limit. Strings match whole, so brackets and digits inside them are skipped."""
    long_number = rb"[-+.0-9eE]{%d,}" % (max_number_length + 1)
    return re.compile(rb'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]|' + long_number, re.DOTALL)


def check_limits(
    body: bytes | str, max_depth: int = MAX_DEPTH, max_number_length: int = MAX_NUMBER_LENGTH
) -> None:
    """Refuse a document nested deeper than `max_depth` or with a number literal longer than
    `max_number_length` characters, without parsing it.

    Raises BadRequestError (whose detail never quotes the body). Says nothing about whether the
    rest is valid JSON; never raises anything else. Linear in the size of `body`.
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    depth = 0
    for match in _tokens(max_number_length).finditer(data):
        token = match.group()
        first = token[:1]
        if first in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise BadRequestError(f"JSON body is nested more than {max_depth} levels deep")
        elif first in (b"]", b"}"):
            depth = max(depth - 1, 0)
        elif first != b'"':
            raise BadRequestError(
                f"JSON body has a number of {len(token)} characters; "
                f"the limit is {max_number_length}"
            )


def parse(
    body: bytes | str,
    max_depth: int = MAX_DEPTH,
    max_number_length: int = MAX_NUMBER_LENGTH,
    unique_keys: bool = True,
) -> object:
    """Parse strict JSON: UTF-8, within check_limits(), without NaN, Infinity, numbers too
    large for a float (1e400) or half a surrogate pair, and (with `unique_keys`) without an
    object naming a key twice, which parsers read differently (the first or the last wins).

    Raises BadRequestError, whose detail never quotes the body.
    """
    check_limits(body, max_depth, max_number_length)
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise BadRequestError("Malformed JSON body: it is not UTF-8 text") from None
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_object if unique_keys else None,
        )
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"Malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # our refusals; RecursionError cannot happen
        raise BadRequestError(f"Malformed JSON body: {exc}") from None
    if (_SURROGATE_ESCAPE.search(text) or isinstance(body, str)) and _has_lone_surrogate(value):
        # "\ud800" decodes to half a character: no UTF-8 text (a database, a receiver) holds it.
        raise BadRequestError("Malformed JSON body: a \\u escape names half of a surrogate pair")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("an object names the same key twice")
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number of {len(text)} characters is out of range")
    return value
