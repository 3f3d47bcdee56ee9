"""Finding things: the dashboard, search, and a namespace's page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from frontend import selectors as page_selectors
from frontend.views.base import FORM_ERROR_STATUS, DenPageView
from registry import selectors as registry_selectors
from registry.errors import InvalidInput, NotFound
from registry.models import ResourceType, UserKind, Visibility

SEARCH_PAGE_SIZE = 25


class DashboardView(DenPageView):
    """What I own, what was shared with me, and what changed lately."""

    def get(self, request: HttpRequest) -> HttpResponse:
        board = page_selectors.dashboard(caller=self.caller)
        orgs = registry_selectors.org_list(caller=self.caller)
        return self.render_page("frontend/dashboard.html", {"board": board, "orgs": orgs})


def _search_filters(params: Any) -> dict[str, Any]:
    return {
        "q": params.get("q", "").strip() or None,
        "type": params.get("type") or None,
        "owner": params.get("owner", "").strip() or None,
        "visibility": params.get("visibility") or None,
        "shared_with_me": params.get("shared") == "1",
        "org": params.get("org", "").strip() or None,
    }


class SearchView(DenPageView):
    """Search what I may find (never others' unlisted resources), newest
    change first, a page at a time; htmx swaps in results as one types."""

    def get(self, request: HttpRequest) -> HttpResponse:
        filters = _search_filters(request.GET)
        context: dict[str, Any] = {
            "filters": filters,
            "orgs": registry_selectors.org_list(caller=self.caller),
            "types": ResourceType.values,
            "visibilities": Visibility.values,
        }
        status = 200
        try:
            page = page_selectors.resource_search(
                caller=self.caller, cursor=request.GET.get("cursor"), size=SEARCH_PAGE_SIZE, **filters
            )
            context["page"] = page
            context["next_query"] = _next_query(request, page.next_cursor)
        except InvalidInput as exc:
            context["error"] = self.error_text(exc)
            status = FORM_ERROR_STATUS
        if self.htmx_target == "load-more":
            return self.render_page("", context, partial="frontend/partials/result_items.html")
        return self.render_page(
            "frontend/search.html", context, partial="frontend/partials/results.html", status=status
        )


def _next_query(request: HttpRequest, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    params = request.GET.copy()
    params["cursor"] = cursor
    return params.urlencode()


class NamespaceView(DenPageView):
    """Everything of one owner's that I may find. An organisation's page also
    shows its members and teams, to its members."""

    def get(self, request: HttpRequest, owner: str) -> HttpResponse:
        person = page_selectors.namespace_owner(username=owner)
        page = page_selectors.resource_search(
            caller=self.caller, cursor=request.GET.get("cursor"), size=SEARCH_PAGE_SIZE,
            owner=person.username,
        )
        context = {"person": person, "page": page, "next_query": _next_query(request, page.next_cursor)}
        if self.htmx_target == "load-more":
            return self.render_page("", context, partial="frontend/partials/result_items.html")
        if person.kind == UserKind.ORG:
            try:
                org = registry_selectors.org_get(caller=self.caller, name=person.username)
            except NotFound:
                org = None  # not a member: only what they may find, as on anyone's page
            if org is not None:
                context.update(org=org, teams=list(registry_selectors.org_teams(org=org)),
                               **registry_selectors.org_members(org=org))
            return self.render_page("frontend/org.html", context)
        return self.render_page("frontend/namespace.html", context)
