"""The base page views: every page derives from ``DenPageView``, and pages
about one resource from ``ResourcePageView``, whose ``resource(level)`` is the
only way a page reaches a resource (through ``registry.access``), mirroring
``registry.api.base.ResourceAPIView``. ``tests/registry/test_urlconf.py``
enforces both."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views import View

from registry.access import Caller, access_resource
from registry.errors import DenError, InvalidInput, NotAuthenticated, NotFound, PermissionDenied
from registry.models import AccessLevel, Resource
from registry.validation import check_request_text

READ, WRITE, OWNER = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.OWNER

#: Status for a form that did not validate; htmx is configured (base.html) to
#: swap it in like a success, so errors show where the form is.
FORM_ERROR_STATUS = 422


class DenPageView(View):
    """A page: knows its caller, sends anonymous visitors to sign in, and turns
    the registry's errors into the pages a person expects (404 for what they
    may not see, 403 for what they may see but not change)."""

    #: Pages that need no signed-in user (sign in, password reset, invitations).
    allow_anonymous = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            check_request_text(request.GET, kwargs)
            if request.method == "POST":
                check_request_text(request.POST, {})
        except InvalidInput as exc:
            # A NUL in a form field or URL: say which, rather than fail in the database.
            return TemplateResponse(request, "400.html", {"message": exc.message, "field": exc.field},
                                    status=400)
        if not self.allow_anonymous and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            return super().dispatch(request, *args, **kwargs)
        except NotAuthenticated:
            return redirect_to_login(request.get_full_path())
        except NotFound as exc:
            raise Http404(exc.message) from None
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from None

    @property
    def caller(self) -> Caller:
        return Caller(user=self.request.user)

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"

    @property
    def htmx_target(self) -> str:
        return self.request.headers.get("HX-Target", "") if self.is_htmx else ""

    def render_page(
        self,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        partial: str | None = None,
        status: int = 200,
    ) -> TemplateResponse:
        """Render a whole page, or only ``partial`` when htmx asks for a fragment."""
        name = partial if partial and self.is_htmx else template
        return TemplateResponse(self.request, name, context or {}, status=status)

    @staticmethod
    def error_text(exc: DenError) -> str:
        return exc.message


class ResourcePageView(DenPageView):
    """Pages about the resource addressed by the ``address`` URL argument.

    Anonymous visitors are let through so that the access layer decides: it
    serves public resources when the server opts in, and otherwise asks them
    to sign in (for every address alike, so nothing leaks)."""

    allow_anonymous = True

    def resource(self, level: int) -> Resource:
        """The addressed resource, if the caller may act on it at ``level``
        (404 when they may not read it, 403 when they may read but not act)."""
        try:
            return access_resource(self.caller, self.kwargs["address"], level)
        except InvalidInput:
            # A malformed address names nothing: the same 404 as a missing one.
            raise NotFound("There is no page at this address.") from None

    def resource_context(self, resource: Resource, tab: str) -> dict[str, Any]:
        """What every page about a resource shows: its header and the tabs the
        caller may use (a tab for what they may not do is not shown at all)."""
        level = resource.access_level
        return {
            "resource": resource,
            "tab": tab,
            "access_level": AccessLevel(level).label,
            "may_write": level >= WRITE,
            "is_owner": level >= OWNER,
            "base_path": resource.address,
        }
