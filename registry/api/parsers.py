"""The API's JSON parser: DRF's, plus the checks that keep bodies storable.

PostgreSQL refuses NUL characters in text and jsonb, a lone surrogate cannot
be encoded as UTF-8, ``1e400`` parses to infinity (which JSON cannot hold),
and a deeply nested body exhausts the parser's recursion. Each of these used
to reach the database or the stack and answer 500; here each is a 400 that
names the field, before any view sees the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant

from registry.errors import InvalidInput
from registry.validation import MAX_JSON_DEPTH, check_json, check_json_depth

_INFINITY = float("inf")
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
#: How many tokens the search for a too-deep body's field looks at, at most.
_DEEP_SCAN_TOKENS = 200_000


def _top_level_field_of_deep_nesting(text: str) -> str | None:
    """The top-level key under which ``text`` nests too deeply, if it can be
    told cheaply (the parser itself only says that recursion ran out)."""
    depth = 0
    last_key: str | None = None
    for count, match in enumerate(_TOKENS.finditer(text)):
        token = match.group()
        if count > _DEEP_SCAN_TOKENS:
            return None
        if token[0] in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return last_key
        elif token[0] in "]}":
            depth -= 1
        elif depth == 1:
            try:
                last_key = str(json.loads(token))  # a key (or a value) of the top level
            except ValueError:
                last_key = None
    return None


def parse_den_json(text: str) -> Any:
    """Parse a JSON body that den may store: a 400 (``InvalidInput``) naming
    the field for NUL, lone surrogates, non-finite numbers and nesting past
    ``MAX_JSON_DEPTH``; ``ValueError`` for text that is not JSON at all. Every
    view that reads a raw body (DRF's parser, the /rh/ views) goes through it."""
    non_finite: list[str] = []

    def parse_float(literal: str) -> float:
        number = float(literal)
        if number in (_INFINITY, -_INFINITY):
            non_finite.append(literal)
        return number

    try:
        data = json.loads(text, parse_constant=strict_constant, parse_float=parse_float)
    except RecursionError:
        field = _top_level_field_of_deep_nesting(text)
        raise InvalidInput(
            f"{field or 'The request body'} nests more than {MAX_JSON_DEPTH} levels deep; "
            "flatten it.",
            field=field,
            code="too_deep",
        ) from None
    # The full walk costs several times the parse on a big config, so it
    # runs only when the text holds what it looks for: an escaped NUL or
    # surrogate (a raw one is invalid JSON or invalid UTF-8 already), or an
    # infinite number. Otherwise only nesting is checked, and only when
    # there are brackets enough to nest too deep.
    if non_finite or _SUSPECT_ESCAPE.search(text):
        return check_json(data)
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        return check_json_depth(data)
    return data


class DenJSONParser(JSONParser):
    """JSON bodies, refused with a 400 naming the field when the database
    could not store them (``registry.validation.check_json``)."""

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: dict[str, Any] | None = None) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            return parse_den_json(text)
        except InvalidInput:
            raise
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
