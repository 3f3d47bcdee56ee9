"""A person's own settings: API tokens and profile."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from frontend.views.base import FORM_ERROR_STATUS, DenPageView
from registry import selectors, services
from registry.errors import DenError
from registry.models import TokenScope

EXPIRY_CHOICES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year")]


class TokenSettingsView(DenPageView):
    """Create API tokens (shown once), see when each was last used, revoke them."""

    template = "frontend/settings/tokens.html"
    partial = "frontend/partials/tokens_panel.html"

    def context(self, **extra: Any) -> dict[str, Any]:
        return {
            "tab": "tokens",
            "tokens": list(selectors.token_list(user=self.request.user)),
            "scopes": TokenScope.values,
            "expiry_choices": EXPIRY_CHOICES,
            "default_expiry": settings.DEN_TOKEN_DEFAULT_EXPIRY_DAYS,
            **extra,
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render_page(self.template, self.context(), partial=self.partial)

    def post(self, request: HttpRequest) -> HttpResponse:
        raw_days = request.POST.get("expires_in_days", "")
        try:
            token, plain = services.token_create_own(
                user=request.user,
                name=request.POST.get("name", ""),
                scope=request.POST.get("scope", TokenScope.READ),
                expires_in_days=int(raw_days) if raw_days.isdigit() else raw_days or None,
            )
        except DenError as exc:
            context = self.context(error=self.error_text(exc), form=request.POST)
            return self.render_page(self.template, context, partial=self.partial,
                                    status=FORM_ERROR_STATUS)
        # Rendered in the response to the POST itself, never stored: shown once.
        response = self.render_page(
            self.template, self.context(new_token=token, new_token_plain=plain), partial=self.partial
        )
        response["Cache-Control"] = "no-store"
        return response


class TokenRevokeView(TokenSettingsView):
    def get(self, request: HttpRequest, token_id: int) -> HttpResponse:  # type: ignore[override]
        return self.http_method_not_allowed(request)

    def post(self, request: HttpRequest, token_id: int) -> HttpResponse:  # type: ignore[override]
        services.token_revoke(user=request.user, token_id=token_id)
        done = "Revoked the token; it no longer works."
        if self.is_htmx:
            return self.render_page(self.template, self.context(notice=done), partial=self.partial)
        messages.success(request, done)
        return HttpResponseRedirect(reverse("frontend:settings-tokens"))


class ProfileView(DenPageView):
    """Display name and password. The email is shown but not changed here."""

    template = "frontend/settings/profile.html"

    def context(self, **extra: Any) -> dict[str, Any]:
        context: dict[str, Any] = {"tab": "profile", "password_form": PasswordChangeForm(self.request.user)}
        context.update(extra)
        return context

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render_page(self.template, self.context())

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            services.user_profile_update(
                user=request.user,
                first_name=request.POST.get("first_name", ""),
                last_name=request.POST.get("last_name", ""),
            )
        except DenError as exc:
            return self.render_page(self.template, self.context(profile_error=self.error_text(exc)),
                                    status=FORM_ERROR_STATUS)
        messages.success(request, "Saved your profile.")
        return HttpResponseRedirect(reverse("frontend:settings-profile"))


class PasswordChangeView(ProfileView):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("frontend:settings-profile"))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = PasswordChangeForm(request.user, request.POST)
        if not form.is_valid():
            return self.render_page(self.template, self.context(password_form=form),
                                    status=FORM_ERROR_STATUS)
        user = services.user_password_change(user=request.user, form=form)
        update_session_auth_hash(request, user)  # stay signed in here; other sessions end
        revoked = user.tokens_revoked
        messages.success(
            request,
            "Changed your password."
            + (f" Your {revoked} API token{'s were' if revoked != 1 else ' was'} revoked; "
               "create new ones under API tokens (or run den login again)." if revoked else ""),
        )
        return HttpResponseRedirect(reverse("frontend:settings-profile"))
