"""How to load a resource from code: the snippets its page offers to copy."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from registry.models import Resource, ResourceType


@dataclass(frozen=True)
class Snippet:
    id: str
    label: str
    language: str
    code: str


def _python(resource: Resource) -> str:
    address = resource.address
    if resource.type == ResourceType.FUNCTION:
        return f'import den\n\nfn = den.function(name="{address}")\nresult = fn()  # runs where it was sent'
    if resource.type == ResourceType.MODULE:
        return f'import den\n\nModel = den.module(name="{address}")\ninstance = Model()'
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
