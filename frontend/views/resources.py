"""Pages about one resource: overview, versions and diffs, access, audit log,
and settings. Each fetches the resource once, through ``resource(level)``, at
the level the page or action needs, then calls one selector or service."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from frontend import selectors as page_selectors
from frontend.diffs import pretty_json, side_by_side
from frontend.snippets import load_snippets
from frontend.views.base import FORM_ERROR_STATUS, OWNER, READ, WRITE, ResourcePageView
from frontend.views.clusters import cluster_context
from registry import selectors, services
from registry.errors import DenError, InvalidInput
from registry.models import Resource, ResourceType, Visibility

VERSIONS_PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 50
VISIBILITY_HELP = {
    Visibility.PRIVATE: "Only you and the people you share it with.",
    Visibility.UNLISTED: "Anyone signed in who has the address; never listed or searchable.",
    Visibility.PUBLIC: "Everyone signed in can find it in lists and search.",
}


def page_url(resource: Resource, name: str, **kwargs: Any) -> str:
    return reverse(f"frontend:{name}", kwargs={"address": resource.address.lstrip("/"), **kwargs})


class ResourceDetailView(ResourcePageView):
    """The resource's page: what it is, its config, and how to load it; for a
    cluster, also its live state (``frontend.views.clusters``)."""

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(READ)
        context = self.resource_context(resource, "overview")
        context.update(
            config_json=pretty_json(resource.config),
            snippets=load_snippets(resource),
            versions=page_selectors.recent_versions(resource=resource),
        )
        if resource.type == ResourceType.CLUSTER:
            context.update(cluster_context(resource, may_write=context["may_write"]))
        return self.render_page("frontend/resources/detail.html", context)


class VersionListView(ResourcePageView):
    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(READ)
        page = page_selectors.version_page(
            resource=resource, cursor=request.GET.get("cursor"), size=VERSIONS_PAGE_SIZE
        )
        context = self.resource_context(resource, "versions")
        context["page"] = page
        return self.render_page("frontend/resources/versions.html", context)


def _version_number(raw: str | None, default: int) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) <= 9 else default


class VersionDiffView(ResourcePageView):
    """Version ``number`` beside another: ``?to=`` if given, else the current
    one; and opened on the current version itself, the change that made it
    (the version before beside it), never a comparison of a version with
    itself."""

    def get(self, request: HttpRequest, address: str, number: str) -> HttpResponse:
        resource = self.resource(READ)
        left = int(number)
        to_number = _version_number(request.GET.get("to"), resource.version)
        if "to" not in request.GET and left == resource.version and left > 1:
            left, to_number = left - 1, left  # the latest change
        old = selectors.resource_version_get(resource=resource, number=left)
        new = selectors.resource_version_get(resource=resource, number=to_number)
        diff = side_by_side(old.config, new.config)
        context = self.resource_context(resource, "versions")
        context.update(
            old=old,
            new=new,
            rows=diff.rows,
            too_large=diff.too_large,
            type_changed=old.type != new.type,
            same_config=old.config == new.config and old.type == new.type,
            first_only=old.number == new.number and "to" not in request.GET,
            config_json=pretty_json(old.config),
            numbers=range(resource.version, 0, -1),
            api_versions=f"/api/v1/resources{resource.address}/-/versions",
        )
        if diff.too_large:
            context.update(old_json=_shown_json(old.config), new_json=_shown_json(new.config))
        return self.render_page("frontend/resources/diff.html", context)


#: A config larger than this, pretty-printed, is offered as a download only.
SHOWN_JSON_LIMIT = 512 * 1024


def _shown_json(config: Any) -> str | None:
    text = pretty_json(config)
    return text if len(text) <= SHOWN_JSON_LIMIT else None


class VersionRestoreView(ResourcePageView):
    def post(self, request: HttpRequest, address: str, number: str) -> HttpResponse:
        resource = self.resource(WRITE)
        try:
            resource = services.resource_restore_version(
                actor=request.user, resource=resource, number=int(number)
            )
        except InvalidInput as exc:  # e.g. it names a cluster this writer may not see
            messages.error(request, f"Version {number} was not restored: {self.error_text(exc)}")
            return HttpResponseRedirect(page_url(resource, "resource-version", number=number))
        messages.success(
            request, f"Restored version {number}: its config is now version {resource.version}."
        )
        return HttpResponseRedirect(page_url(resource, "resource-versions"))


class AccessView(ResourcePageView):
    """Who may use the resource; share it by username or email, or revoke."""

    template = "frontend/resources/access.html"
    partial = "frontend/partials/access_panel.html"

    def context(self, resource: Resource, **extra: Any) -> dict[str, Any]:
        context = self.resource_context(resource, "access")
        context.update(selectors.resource_access_list(resource=resource), **extra)
        return context

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(WRITE)
        return self.render_page(self.template, self.context(resource), partial=self.partial)

    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(WRITE)
        names = [part for part in request.POST.get("users", "").replace(",", " ").split() if part]
        # org/team names a team; anything else is a username or an email.
        people = [name for name in names if "/" not in name]
        teams = [name for name in names if "/" in name]
        level = request.POST.get("level", "read")
        try:
            result = services.resource_share(
                actor=request.user, resource=resource, users=people, teams=teams, level=level
            )
        except DenError as exc:
            context = self.context(resource, share_error=self.error_text(exc),
                                   share_users=request.POST.get("users", ""), share_level=level)
            return self.render_page(self.template, context, partial=self.partial,
                                    status=FORM_ERROR_STATUS)
        done = _share_summary(result, level)
        if self.is_htmx:
            return self.render_page("", self.context(resource, notice=done), partial=self.partial)
        messages.success(request, done)
        return HttpResponseRedirect(page_url(resource, "resource-access"))


def _share_summary(result: dict[str, list[str]], level: str) -> str:
    parts = []
    if result["granted"]:
        parts.append(f"Gave {', '.join(result['granted'])} {level} access.")
    if result["invited"]:
        parts.append(f"Invited {', '.join(result['invited'])} by email ({level} access once they join).")
    if result.get("teams"):
        parts.append(f"Gave the team{'s' if len(result['teams']) > 1 else ''} "
                     f"{', '.join(result['teams'])} {level} access.")
    return " ".join(parts)


class AccessRevokeView(AccessView):
    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        return self.http_method_not_allowed(request)

    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(WRITE)
        who = request.POST.get("who", "").strip()
        if "/" in who:  # a team, org/team
            org, _, team = who.partition("/")
            services.resource_revoke_team(actor=request.user, resource=resource, org=org,
                                          team=team)
            done = f"Revoked the team {who}'s access."
        else:
            services.resource_revoke(actor=request.user, resource=resource, who=who)
            done = f"Revoked {who}'s access."
        if self.is_htmx:
            return self.render_page("", self.context(resource, notice=done), partial=self.partial)
        messages.success(request, done)
        return HttpResponseRedirect(page_url(resource, "resource-access"))


class AuditView(ResourcePageView):
    """The resource's audit log, for those who may write it."""

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(WRITE)
        page = page_selectors.audit_page(
            caller=self.caller, resource=resource, cursor=request.GET.get("cursor"),
            size=AUDIT_PAGE_SIZE,
        )
        context = self.resource_context(resource, "audit")
        context["page"] = page
        return self.render_page("frontend/resources/audit.html", context)


class SettingsView(ResourcePageView):
    """Description (writers), visibility and deletion (owner only)."""

    def context(self, resource: Resource, **extra: Any) -> dict[str, Any]:
        context = self.resource_context(resource, "settings")
        context["visibilities"] = [(value, VISIBILITY_HELP[value]) for value in Visibility.values]
        context.update(extra)
        return context

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(WRITE)
        return self.render_page("frontend/resources/settings.html", self.context(resource))


class DescriptionView(SettingsView):
    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        return self.http_method_not_allowed(request)

    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(WRITE)
        try:
            services.resource_update_meta(
                actor=request.user, resource=resource,
                description=request.POST.get("description", "").strip(),
            )
        except DenError as exc:
            return self.render_page("frontend/resources/settings.html",
                                    self.context(resource, description_error=self.error_text(exc)),
                                    status=FORM_ERROR_STATUS)
        messages.success(request, "Saved the description.")
        return HttpResponseRedirect(page_url(resource, "resource-settings"))


class VisibilityView(SettingsView):
    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        return self.http_method_not_allowed(request)

    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(OWNER)
        try:
            resource = services.resource_update_meta(
                actor=request.user, resource=resource, visibility=request.POST.get("visibility")
            )
        except DenError as exc:
            return self.render_page("frontend/resources/settings.html",
                                    self.context(resource, visibility_error=self.error_text(exc)),
                                    status=FORM_ERROR_STATUS)
        messages.success(request, f"{resource.address} is now {resource.visibility}.")
        return HttpResponseRedirect(page_url(resource, "resource-settings"))


class DeleteView(ResourcePageView):
    """Deleting asks for the address to be typed, so it is never one stray click."""

    template = "frontend/resources/delete.html"

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(OWNER)
        return self.render_page(self.template, self.resource_context(resource, "settings"))

    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.resource(OWNER)
        typed = request.POST.get("confirm", "").strip()
        if typed not in (resource.address, resource.address.lstrip("/")):
            context = self.resource_context(resource, "settings")
            context["error"] = f"Type {resource.address} to confirm; nothing was deleted."
            return self.render_page(self.template, context, status=FORM_ERROR_STATUS)
        address_text = resource.address
        services.resource_delete(actor=request.user, resource=resource)
        messages.success(request, f"Deleted {address_text}.")
        return HttpResponseRedirect(reverse("frontend:dashboard"))
