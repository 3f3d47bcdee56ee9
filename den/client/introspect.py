"""Describe Python functions and classes as JSON: where they live and how they are called.

``pointers`` say where the code is (module, qualname, file path relative to the
project root) so a node can import it; ``signature`` keeps parameters and doc so a
loaded stub can check arguments and show help without the code. This module
imports :mod:`inspect`, so the rest of the client imports it only when needed.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "class_signature",
    "find_project_root",
    "function_signature",
    "pointers_for",
    "signature_from_json",
]

_ROOT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", "requirements.txt")


def find_project_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` that holds a project marker.

    Markers are ``.git``, ``pyproject.toml``, ``setup.py``, ``setup.cfg`` and
    ``requirements.txt``; with none, ``start`` itself is the root.
    """
    start = start if start.is_dir() else start.parent
    for directory in (start, *start.parents):
        if any((directory / marker).exists() for marker in _ROOT_MARKERS):
            return directory
    return start


def _module_from_path(relative: str) -> str:
    stem = relative[:-3] if relative.endswith(".py") else relative
    parts = [part for part in stem.replace(os.sep, "/").split("/") if part]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def pointers_for(obj: Any) -> dict[str, Any]:
    """Where ``obj`` (a function or class) lives: module, qualname and project-relative path."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    path: str | None = None
    root: Path | None = None
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        source = None
    if source and os.path.exists(source):
        file = Path(source).resolve()
        root = find_project_root(file.parent)
        try:
            path = file.relative_to(root).as_posix()
        except ValueError:
            path = file.name
    if module == "__main__" and path:
        # A script run as __main__ is importable elsewhere by its path in the project.
        module = _module_from_path(path)
    return {"module": module, "qualname": qualname, "path": path}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def function_signature(fn: Callable[..., Any], *, skip_first: bool = False) -> dict[str, Any]:
    """The JSON signature of a callable: name, doc, parameters, return annotation.

    ``skip_first`` drops ``self``/``cls`` (for methods read off a class).
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if skip_first and params:
        params = params[1:]
    parameters: list[dict[str, Any]] = []
    for param in params:
        entry: dict[str, Any] = {"name": param.name, "kind": param.kind.name}
        if param.default is not inspect.Parameter.empty:
            if _jsonable(param.default):
                entry["default"] = param.default
            else:
                entry["default_repr"] = repr(param.default)
        if param.annotation is not inspect.Parameter.empty:
            entry["annotation"] = _annotation(param.annotation)
        parameters.append(entry)
    result: dict[str, Any] = {
        "name": getattr(fn, "__name__", None),
        "doc": inspect.getdoc(fn),
        "parameters": parameters,
        "is_async": inspect.iscoroutinefunction(fn),
    }
    if sig.return_annotation is not inspect.Signature.empty:
        result["return_annotation"] = _annotation(sig.return_annotation)
    return result


def class_signature(cls: type) -> dict[str, Any]:
    """The JSON signature of a class: name, doc, ``__init__`` and public method signatures."""
    methods: dict[str, Any] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, staticmethod):
            methods[name] = {**function_signature(member), "kind": "staticmethod"}
        elif isinstance(raw, classmethod):
            methods[name] = {**function_signature(member), "kind": "classmethod"}
        elif inspect.isfunction(member):
            methods[name] = {**function_signature(member, skip_first=True), "kind": "method"}
    init: dict[str, Any] | None = None
    constructor = cls.__init__  # type: ignore[misc]
    if constructor is not object.__init__:
        init = function_signature(constructor, skip_first=True)
        init.pop("return_annotation", None)  # always None; the call returns an instance
    return {
        "name": cls.__name__,
        "doc": inspect.getdoc(cls),
        "init": init,
        "methods": methods,
    }


class _Repr:
    """Stands for an annotation, or a default that was not JSON, by its source text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Repr) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _annotation_from(data: dict[str, Any], key: str, empty: Any) -> Any:
    return _Repr(str(data[key])) if data.get(key) is not None else empty


def signature_from_json(data: dict[str, Any] | None) -> inspect.Signature:
    """Rebuild an :class:`inspect.Signature` from :func:`function_signature`'s JSON.

    Annotations, and defaults that were not JSON, come back as placeholders
    whose repr is their source text, so the signature prints as it was written.
    """
    if not data:
        return inspect.Signature(
            [
                inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
            ]
        )
    parameters = []
    for entry in data.get("parameters") or []:
        kind = inspect._ParameterKind[entry.get("kind", "POSITIONAL_OR_KEYWORD")]
        default: Any = inspect.Parameter.empty
        if "default" in entry:
            default = entry["default"]
        elif "default_repr" in entry:
            default = _Repr(entry["default_repr"])
        parameters.append(
            inspect.Parameter(
                entry["name"],
                kind,
                default=default,
                annotation=_annotation_from(entry, "annotation", inspect.Parameter.empty),
            )
        )
    return inspect.Signature(
        parameters,
        return_annotation=_annotation_from(data, "return_annotation", inspect.Signature.empty),
    )
