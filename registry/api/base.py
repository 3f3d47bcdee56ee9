"""The base API view: every API view derives from ``DenAPIView`` and reaches
resources only through ``ResourceAPIView.resource(level)``, which goes through
``registry.access``. ``tests/registry/test_urlconf.py`` enforces both."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.views import APIView

from registry.access import Caller, access_resource
from registry.api.parsers import DenJSONParser
from registry.errors import InvalidInput, TooLarge
from registry.models import Resource
from registry.validation import check_request_text


class SingleRendererNegotiation(DefaultContentNegotiation):
    """Views that render one format skip DRF's Accept parsing (a measurable
    part of a small request); views with several (SSE and JSON) negotiate."""

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: Any = None) -> Any:
        if len(renderers) == 1:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


class DenAPIView(APIView):
    """Parses input with a serializer, refuses oversized bodies before reading
    them, and knows its caller."""

    content_negotiation_class = SingleRendererNegotiation
    #: JSON only; bodies the database could not store are refused, naming the field.
    parser_classes = [DenJSONParser]
    #: True for the few endpoints that need no user (login, invitations).
    allow_anonymous = False
    #: True where anonymous reads of public resources are allowed (if the server opts in).
    allow_anonymous_read = False

    def max_body_bytes(self) -> int:
        """The largest body this view reads (a few take code bundles)."""
        return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        length = request.META.get("CONTENT_LENGTH") or 0
        try:
            length = int(length)
        except ValueError:
            raise InvalidInput("Content-Length is not a number.") from None
        limit = self.max_body_bytes()
        if length > limit:
            raise TooLarge(f"The request body is {length} bytes; the limit is {limit} bytes.")
        check_request_text(request.query_params, kwargs)
        super().initial(request, *args, **kwargs)

    @property
    def caller(self) -> Caller:
        return Caller.from_request(self.request)

    def parse(self, serializer_class: Any) -> dict[str, Any]:
        if not isinstance(self.request.data, dict):
            raise InvalidInput("The request body must be a JSON object.")
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def paginate(self, queryset: Any, serializer_class: Any, pagination_class: Any) -> Any:
        paginator = pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


class ResourceAPIView(DenAPIView):
    """Views about one resource, addressed by the ``address`` URL argument."""

    allow_anonymous_read = True

    def resource(self, level: int) -> Resource:
        """The addressed resource, if the caller may act on it at ``level``
        (404 when they may not read it, 403 when they may read but not act)."""
        return access_resource(self.caller, self.kwargs["address"], level)


class ResourcePagination(CursorPagination):
    ordering = ("-changed_at", "-id")  # see registry.selectors.resource_list
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class VersionPagination(CursorPagination):
    ordering = "-number"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class AuditPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
