"""Every registry model in the Django admin. Token hashes and secret
ciphertexts are read-only there; plain values are never stored to show."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from registry.models import (
    AccessGrant,
    ApiToken,
    AuditEvent,
    CodeBundle,
    Invitation,
    PendingGrant,
    Resource,
    ResourceVersion,
    SecretValue,
    User,
)


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


class AccessGrantInline(admin.TabularInline):
    model = AccessGrant
    fk_name = "resource"
    extra = 0
    raw_id_fields = ("user", "granted_by")


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "type", "visibility", "version", "updated_at")
    list_filter = ("type", "visibility")
    search_fields = ("name", "owner__username", "description")
    raw_id_fields = ("owner",)
    readonly_fields = ("version", "created_at", "updated_at")
    inlines = [AccessGrantInline]


@admin.register(ResourceVersion)
class ResourceVersionAdmin(admin.ModelAdmin):
    list_display = ("resource", "number", "type", "author", "created_at")
    raw_id_fields = ("resource", "author")

    def has_change_permission(self, request, obj=None):
        return False  # versions are immutable


@admin.register(AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    list_display = ("resource", "user", "level", "granted_by", "created_at")
    raw_id_fields = ("resource", "user", "granted_by")


@admin.register(PendingGrant)
class PendingGrantAdmin(admin.ModelAdmin):
    list_display = ("resource", "email", "level", "invited_by", "created_at")
    raw_id_fields = ("resource", "invited_by")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Adding an invitation asks only for an email: the service makes the
    link, mails it, writes the audit row, and the link is shown here once."""

    list_display = ("email", "invited_by", "created_at", "expires_at", "accepted_at")
    readonly_fields = ("token_hash",)
    raw_id_fields = ("invited_by", "accepted_by", "resource")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["fields"] = ["email"]
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        from django.contrib import messages

        from registry import services

        invitation = services.invitation_create(actor=request.user, email=form.cleaned_data["email"])
        obj.pk = invitation.pk
        messages.success(
            request,
            f"Invitation sent to {invitation.email}. Its link, shown this once: "
            f"{services.invitation_url(invitation.plain_token)}",
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "scope", "hint", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("scope",)
    readonly_fields = ("token_hash", "hint", "last_used_at")
    raw_id_fields = ("user",)


@admin.register(SecretValue)
class SecretValueAdmin(admin.ModelAdmin):
    list_display = ("resource", "updated_by", "updated_at")
    readonly_fields = ("ciphertext",)
    raw_id_fields = ("resource", "updated_by")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_username", "action", "address")
    list_filter = ("action",)
    search_fields = ("address", "actor_username")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CodeBundle)
class CodeBundleAdmin(admin.ModelAdmin):
    """Shown, never edited: a bundle is its hash, and daemons unpack it as is."""

    list_display = ("sha256", "size", "uploaded_by", "created_at")
    search_fields = ("sha256",)
    exclude = ("data",)
    readonly_fields = ("sha256", "size", "uploaded_by", "created_at")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

