"""Every registry model in the Django admin.

Resources, versions, grants, pending grants, secret values, tokens, audit
rows and organisations' memberships, teams, team grants and service accounts
are shown read-only: an edit here would change access or a config with
no audit row and no version, and deleting here would skip the services'
clean-up. What staff may do to them are actions that go through
``registry.services``, like the API and the web UI, and so leave the same
versions and audit rows: change a resource's visibility, delete resources,
revoke grants, cancel invitations, revoke tokens. Those actions are for
superusers, as they change other people's access.

Users are edited with Django's user admin; a password set there ends the
user's API tokens like any password change (``services.user_password_changed``).
Token hashes and secret ciphertexts are never editable; plain values are
never stored to show.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from registry import services
from registry.errors import DenError
from registry.models import (
    AccessGrant,
    ApiToken,
    AuditEvent,
    CodeBundle,
    Invitation,
    Membership,
    PendingGrant,
    PendingMembership,
    Resource,
    ResourceVersion,
    SecretValue,
    ServiceAccount,
    Team,
    TeamGrant,
    TeamMember,
    User,
    Visibility,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; never adds, edits or deletes them. Changes are actions
    that call a service; they are offered to superusers only."""

    service_actions: tuple[str, ...] = ()

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            for name in self.service_actions:
                actions.pop(name, None)
        return actions


def _run_on_each(modeladmin: admin.ModelAdmin, request: HttpRequest, rows: Any,
                 change: Any, done: str, label: Any = str) -> int:
    """Apply ``change(row)`` (a service call) to each row, reporting errors per row."""
    count = 0
    for row in rows:
        try:
            change(row)
        except DenError as exc:
            modeladmin.message_user(request, f"{label(row)}: {exc.message}", messages.ERROR)
        else:
            count += 1
    if count:
        modeladmin.message_user(request, done.format(count=count), messages.SUCCESS)
    return count


class DenUserCreationForm(UserCreationForm):
    """Django's form, bound to den's user model so reserved names are refused."""

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class DenUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


@admin.register(User)
class DenUserAdmin(UserAdmin):
    add_form = DenUserCreationForm
    form = DenUserChangeForm
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )

    def user_change_password(self, request: HttpRequest, id: str,
                             form_url: str = "") -> HttpResponse:
        """Django's "set password" page; a password set here ends the user's
        API tokens (their cluster tokens stay), with an audit row."""
        user = self.get_object(request, id)
        before = user.password if user is not None else None
        response = super().user_change_password(request, id, form_url)
        if user is not None and request.method == "POST":
            user.refresh_from_db(fields=["password"])
            if user.password != before:
                revoked = services.user_password_changed(actor=request.user, user=user,
                                                         how="admin")
                self.message_user(request, f"Revoked {revoked} API token"
                                  f"{'s' if revoked != 1 else ''} of {user.username}.",
                                  messages.INFO)
        return response


class AccessGrantInline(admin.TabularInline):
    model = AccessGrant
    fk_name = "resource"
    extra = 0
    fields = ("user", "level", "granted_by", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Resource)
class ResourceAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "type", "visibility", "version", "updated_at")
    list_filter = ("type", "visibility")
    list_select_related = ("owner",)
    search_fields = ("name", "owner__username", "description")
    inlines = [AccessGrantInline]
    actions = ["make_private", "make_unlisted", "make_public", "delete_resources"]
    service_actions = tuple(actions)

    def _set_visibility(self, request: HttpRequest, queryset: QuerySet[Resource],
                        visibility: str) -> None:
        _run_on_each(
            self, request, queryset.select_related("owner"),
            lambda resource: services.resource_update_meta(
                actor=request.user, resource=resource, visibility=visibility),
            f"Made {{count}} resource(s) {visibility}.", label=lambda r: r.address,
        )

    @admin.action(description="Make the selected resources private")
    def make_private(self, request: HttpRequest, queryset: QuerySet[Resource]) -> None:
        self._set_visibility(request, queryset, Visibility.PRIVATE)

    @admin.action(description="Make the selected resources unlisted")
    def make_unlisted(self, request: HttpRequest, queryset: QuerySet[Resource]) -> None:
        self._set_visibility(request, queryset, Visibility.UNLISTED)

    @admin.action(description="Make the selected resources public")
    def make_public(self, request: HttpRequest, queryset: QuerySet[Resource]) -> None:
        self._set_visibility(request, queryset, Visibility.PUBLIC)

    @admin.action(description="Delete the selected resources (asks first)")
    def delete_resources(self, request: HttpRequest,
                         queryset: QuerySet[Resource]) -> HttpResponse | None:
        resources = list(queryset.select_related("owner"))
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(request, "admin/registry/confirm_delete_resources.html", {
                **self.admin_site.each_context(request),
                "title": "Delete resources?",
                "resources": resources,
                "action": "delete_resources",
                "opts": self.model._meta,
            })
        _run_on_each(
            self, request, resources,
            lambda resource: services.resource_delete(actor=request.user, resource=resource),
            "Deleted {count} resource(s) with their versions, grants and secret values.",
            label=lambda r: r.address,
        )
        return None


@admin.register(ResourceVersion)
class ResourceVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable; restoring one is done on its resource's page."""

    list_display = ("resource", "number", "type", "author", "created_at")
    list_select_related = ("resource__owner", "author")


@admin.register(AccessGrant)
class AccessGrantAdmin(ReadOnlyAdmin):
    list_display = ("resource", "user", "level", "granted_by", "created_at")
    list_select_related = ("resource__owner", "user", "granted_by")
    search_fields = ("resource__name", "user__username")
    actions = ["revoke_grants"]
    service_actions = tuple(actions)

    @admin.action(description="Revoke the selected grants")
    def revoke_grants(self, request: HttpRequest, queryset: QuerySet[AccessGrant]) -> None:
        _run_on_each(
            self, request, queryset.select_related("resource__owner", "user"),
            lambda grant: services.resource_revoke(actor=request.user, resource=grant.resource,
                                                   who=grant.user.username),
            "Revoked {count} grant(s).", label=lambda g: f"{g.user} on {g.resource}",
        )


@admin.register(PendingGrant)
class PendingGrantAdmin(ReadOnlyAdmin):
    list_display = ("resource", "email", "level", "invited_by", "created_at")
    list_select_related = ("resource__owner", "invited_by")
    actions = ["cancel_pending"]
    service_actions = tuple(actions)

    @admin.action(description="Cancel the selected invitations to resources")
    def cancel_pending(self, request: HttpRequest, queryset: QuerySet[PendingGrant]) -> None:
        _run_on_each(
            self, request, queryset.select_related("resource__owner"),
            lambda pending: services.resource_revoke(actor=request.user,
                                                     resource=pending.resource,
                                                     who=pending.email),
            "Cancelled {count} invitation(s).", label=lambda p: f"{p.email} on {p.resource}",
        )


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Adding an invitation asks only for an email: the service makes the
    link, mails it, writes the audit row, and the link is shown here once.
    Invitations are not edited or deleted here."""

    list_display = ("email", "invited_by", "created_at", "expires_at", "accepted_at")
    readonly_fields = ("token_hash",)
    raw_id_fields = ("invited_by", "accepted_by", "resource")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        if obj is None:
            kwargs["fields"] = ["email"]
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return None
        invitation = services.invitation_create(actor=request.user,
                                                email=form.cleaned_data["email"])
        obj.pk = invitation.pk
        messages.success(
            request,
            f"Invitation sent to {invitation.email}. Its link, shown this once: "
            f"{services.invitation_url(invitation.plain_token)}",
        )
        return None


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("name", "user", "scope", "hint", "expires_at", "last_used_at", "revoked_at",
                    "cluster")
    list_filter = ("scope",)
    list_select_related = ("user", "cluster__owner")
    search_fields = ("name", "user__username", "hint")
    exclude = ("token_hash",)
    actions = ["revoke_tokens"]
    service_actions = tuple(actions)

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        _run_on_each(
            self, request, queryset.filter(revoked_at__isnull=True).select_related("user"),
            lambda token: services.token_revoke_as_admin(actor=request.user, token_id=token.pk),
            "Revoked {count} token(s).", label=lambda t: str(t),
        )


@admin.register(SecretValue)
class SecretValueAdmin(ReadOnlyAdmin):
    """That a secret has values, and who set them last; never the values."""

    list_display = ("resource", "updated_by", "updated_at")
    exclude = ("ciphertext",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_username", "action", "address")
    list_filter = ("action",)
    search_fields = ("address", "actor_username")



@admin.register(CodeBundle)
class CodeBundleAdmin(ReadOnlyAdmin):
    """Shown, never edited: a bundle is its hash, and daemons unpack it as is."""

    list_display = ("sha256", "size", "uploaded_by", "created_at")
    search_fields = ("sha256",)
    exclude = ("data",)


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    """Org roles; they change through the API and the org settings page (audited)."""

    list_display = ("org", "user", "role", "added_by", "created_at")
    list_select_related = ("org", "user", "added_by")
    search_fields = ("org__username", "user__username")


@admin.register(PendingMembership)
class PendingMembershipAdmin(ReadOnlyAdmin):
    list_display = ("org", "email", "role", "invited_by", "created_at")
    list_select_related = ("org", "invited_by")


@admin.register(Team)
class TeamAdmin(ReadOnlyAdmin):
    list_display = ("org", "name", "created_at")
    list_select_related = ("org",)


@admin.register(TeamMember)
class TeamMemberAdmin(ReadOnlyAdmin):
    list_display = ("team", "user", "added_by", "created_at")
    list_select_related = ("team__org", "user", "added_by")


@admin.register(TeamGrant)
class TeamGrantAdmin(ReadOnlyAdmin):
    list_display = ("resource", "team", "level", "granted_by", "created_at")
    list_select_related = ("resource__owner", "team__org", "granted_by")


@admin.register(ServiceAccount)
class ServiceAccountAdmin(ReadOnlyAdmin):
    list_display = ("org", "name", "user", "created_by", "created_at")
    list_select_related = ("org", "user", "created_by")
