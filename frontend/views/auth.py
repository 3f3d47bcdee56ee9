"""Signing in and out, password reset, and accepting an invitation.

The sign-in and reset pages are Django's own auth views (their forms, token
checks and emails), given den's templates and ``DenPageView``'s base."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from frontend.views.base import FORM_ERROR_STATUS, DenPageView
from registry import services
from registry.errors import DenError, NotFound
from registry.throttling import LoginRateThrottle, Throttled, password_reset_check

# Accounts made from an invitation sign in with the usual password backend.
PASSWORD_BACKEND = "registry.backends.PersonBackend"


class LoginPageView(DenPageView, auth_views.LoginView):
    """Sign in. Password guesses share the API login's rate limit (scope
    ``login``), so the page is no way around it."""

    allow_anonymous = True
    template_name = "frontend/auth/login.html"
    redirect_authenticated_user = True
    throttle_scope = "login"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttle = LoginRateThrottle()
        if not throttle.allow_request(request, self):
            context = self.get_context_data(
                form=self.get_form_class()(request),
                error="Too many sign-in attempts; wait a minute and try again.",
            )
            response = self.render_to_response(context, status=429)
            wait = throttle.wait()
            if wait:
                response["Retry-After"] = str(int(wait))
            return response
        return super().post(request, *args, **kwargs)


class LogoutPageView(DenPageView, auth_views.LogoutView):
    """Sign out (POST only, so a link elsewhere cannot sign anyone out)."""

    allow_anonymous = True
    next_page = reverse_lazy("frontend:login")


class PasswordResetPageView(DenPageView, auth_views.PasswordResetView):
    """Ask for a reset link by email; the answer is the same whether or not
    the address has an account, so the page reveals nobody's email. Emails
    are limited per address and per client (``registry.throttling``)."""

    allow_anonymous = True
    template_name = "frontend/auth/password_reset.html"
    email_template_name = "frontend/auth/password_reset_email.txt"
    subject_template_name = "frontend/auth/password_reset_subject.txt"
    success_url = reverse_lazy("frontend:password-reset-sent")

    def form_valid(self, form: Any) -> HttpResponse:
        try:
            password_reset_check(request=self.request, email=form.cleaned_data["email"])
        except Throttled as exc:
            form.add_error("email", exc.message)
            response = self.form_invalid(form)
            response.status_code = 429
            response["Retry-After"] = str(exc.retry_after)
            return response
        # Links point at DEN_PUBLIC_URL, never at whatever Host the request named.
        public = urlsplit(settings.DEN_PUBLIC_URL)
        self.extra_email_context = {"domain": public.netloc, "protocol": public.scheme,
                                    "site_name": "den"}
        return super().form_valid(form)


class PasswordResetSentView(DenPageView, auth_views.PasswordResetDoneView):
    allow_anonymous = True
    template_name = "frontend/auth/password_reset_sent.html"


class PasswordResetConfirmPageView(DenPageView, auth_views.PasswordResetConfirmView):
    """Django's reset-link page; the new password also ends the user's API
    tokens (``services.user_password_reset``), like any password change."""

    allow_anonymous = True
    template_name = "frontend/auth/password_reset_confirm.html"
    success_url = reverse_lazy("frontend:password-reset-done")

    def form_valid(self, form: Any) -> HttpResponse:
        # Django's own form_valid, with the service saving the form (so that
        # the token revocation and its audit row share its transaction).
        services.user_password_reset(form=form)
        del self.request.session[auth_views.INTERNAL_RESET_SESSION_TOKEN]
        return super(auth_views.PasswordResetConfirmView, self).form_valid(form)


class PasswordResetDonePageView(DenPageView, auth_views.PasswordResetCompleteView):
    allow_anonymous = True
    template_name = "frontend/auth/password_reset_done.html"


@method_decorator([sensitive_post_parameters("password", "password2"), never_cache], name="dispatch")
class InvitationView(DenPageView):
    """Accept an invitation: choose a username and password, and arrive signed
    in with every resource that was shared with the invited email."""

    allow_anonymous = True
    template = "frontend/auth/invitation.html"

    def invitation_or_404(self, token: str) -> Any:
        return services.invitation_get(token=token)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        invitation = self.invitation_or_404(token)
        return self.render_page(self.template, {"invitation": invitation})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        invitation = self.invitation_or_404(token)
        username = request.POST.get("username", "").strip()
        password = request.POST.get("password", "")
        context: dict[str, Any] = {"invitation": invitation, "username": username}
        if password != request.POST.get("password2", ""):
            context["error"] = "The two passwords differ; type the same password twice."
            context["error_field"] = "password2"
            return self.render_page(self.template, context, status=FORM_ERROR_STATUS)
        try:
            user = services.invitation_accept(token=token, username=username, password=password)
        except NotFound:
            raise
        except DenError as exc:
            context["error"] = self.error_text(exc)
            context["error_field"] = exc.field
            return self.render_page(self.template, context, status=FORM_ERROR_STATUS)
        login(request, user, backend=PASSWORD_BACKEND)
        messages.success(request, f"Welcome to den, {user.username}.")
        return HttpResponseRedirect(reverse("frontend:dashboard"))
