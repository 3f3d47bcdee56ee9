"""How to load a resource from code: the snippets its page offers to copy.

They are written from the saved signature, so that they run as shown: a
function is called with its parameters; a saved module *instance* (what
``Model(3, name="model")`` saves) is loaded and used as the instance it is,
while a saved class is called first to make one. Names from the config are
used only when they are Python identifiers, and defaults only when short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from registry.models import Resource, ResourceType


@dataclass(frozen=True)
class Snippet:
    id: str
    label: str
    language: str
    code: str


#: A default longer than this is shown as ``...``.
MAX_DEFAULT_TEXT = 30


def _parameters(signature: Any) -> list[dict[str, Any]]:
    """The parameters of a saved signature (``introspect.function_signature``),
    or of the older ``{"params": [names]}`` form."""
    if not isinstance(signature, dict):
        return []
    parameters = signature.get("parameters")
    if isinstance(parameters, list):
        return [p for p in parameters if isinstance(p, dict)]
    names = signature.get("params")
    if isinstance(names, list):
        return [{"name": name} for name in names if isinstance(name, str)]
    return []


def _call_arguments(signature: Any) -> str:
    """``data, epochs=3`` for ``def f(data, epochs=3)``: required parameters by
    name, optional ones with their default."""
    parts: list[str] = []
    for parameter in _parameters(signature):
        name = parameter.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            continue
        kind = parameter.get("kind")
        if kind == "VAR_POSITIONAL":
            parts.append(f"*{name}")
        elif kind == "VAR_KEYWORD":
            parts.append(f"**{name}")
        elif "default" in parameter:
            text = repr(parameter["default"])
            parts.append(f"{name}={text if len(text) <= MAX_DEFAULT_TEXT else '...'}")
        elif "default_repr" in parameter:
            parts.append(f"{name}=...")
        elif kind == "KEYWORD_ONLY":
            parts.append(f"{name}={name}")
        else:
            parts.append(name)
    return ", ".join(parts)


def _first_method(signature: Any) -> tuple[str, Any]:
    methods = signature.get("methods") if isinstance(signature, dict) else None
    if isinstance(methods, dict):
        for name, method in methods.items():
            if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
                return name, method
    return "method", None


def _python_function(resource: Resource, config: dict[str, Any]) -> str:
    arguments = _call_arguments(config.get("signature"))
    return (
        f'import den\n\nfn = den.function(name="{resource.address}")\n'
        f"result = fn({arguments})  # runs on its cluster"
    )


def _python_module(resource: Resource, config: dict[str, Any]) -> str:
    signature = config.get("signature") if isinstance(config.get("signature"), dict) else {}
    method, method_signature = _first_method(signature)
    call = f"{method}({_call_arguments(method_signature)})"
    data = config.get("data")
    if isinstance(data, dict) and data.get("instance"):
        # A saved instance: loading it gives the instance itself, state and all.
        return (
            f'import den\n\nm = den.module(name="{resource.address}")  # the saved instance\n'
            f"m.{call}  # runs on its cluster"
        )
    class_name = signature.get("name")
    if not isinstance(class_name, str) or not class_name.isidentifier():
        class_name = "Model"
    init_arguments = _call_arguments(signature.get("init"))
    return (
        f'import den\n\n{class_name} = den.module(name="{resource.address}")\n'
        f"m = {class_name}({init_arguments})  # makes an instance on its cluster\n"
        f"m.{call}"
    )


def _python(resource: Resource) -> str:
    config = resource.config if isinstance(resource.config, dict) else {}
    if resource.type == ResourceType.FUNCTION:
        return _python_function(resource, config)
    if resource.type == ResourceType.MODULE:
        return _python_module(resource, config)
    return f'import den\n\nthing = den.load("{resource.url}")'


def _curl(resource: Resource) -> str:
    return (
        'curl -H "Authorization: Bearer $DEN_TOKEN" \\\n'
        f"  {settings.DEN_PUBLIC_URL}/api/v1/resources{resource.address}"
    )


def load_snippets(resource: Resource) -> list[Snippet]:
    return [
        Snippet("python", "Python", "python", _python(resource)),
        Snippet("curl", "curl", "shell", _curl(resource)),
    ]
