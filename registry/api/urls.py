"""API v1 routes. A resource's address is the rest of the path; what is
*about* a resource hangs under the reserved segment ``-``."""

from django.urls import path, re_path

from registry.api import views

ADDRESS = r"(?P<address>(?:(?!/-/).)+?)"

urlpatterns = [
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/check", views.AuthCheckView.as_view(), name="auth-check"),
    path("me", views.MeView.as_view(), name="me"),
    path("tokens", views.TokenListView.as_view(), name="token-list"),
    path("tokens/current", views.TokenCurrentView.as_view(), name="token-current"),
    path("tokens/<int:token_id>", views.TokenDetailView.as_view(), name="token-detail"),
    path("audit", views.AuditListView.as_view(), name="audit-list"),
    path("invitations", views.InvitationListView.as_view(), name="invitation-list"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("invitations/<str:token>", views.InvitationDetailView.as_view(), name="invitation-detail"),
    path("code/<str:sha>", views.CodeBundleView.as_view(), name="code-bundle"),
    path("resources", views.ResourceListView.as_view(), name="resource-list"),
    re_path(
        rf"^resources/{ADDRESS}/-/versions/(?P<number>[^/]+)/restore$",
        views.ResourceVersionRestoreView.as_view(),
        name="resource-version-restore",
    ),
    re_path(
        rf"^resources/{ADDRESS}/-/versions/(?P<number>[^/]+)$",
        views.ResourceVersionDetailView.as_view(),
        name="resource-version-detail",
    ),
    re_path(
        rf"^resources/{ADDRESS}/-/versions$",
        views.ResourceVersionListView.as_view(),
        name="resource-version-list",
    ),
    re_path(
        rf"^resources/{ADDRESS}/-/access/(?P<who>[^/]+)$",
        views.ResourceAccessDetailView.as_view(),
        name="resource-access-detail",
    ),
    re_path(rf"^resources/{ADDRESS}/-/access$", views.ResourceAccessView.as_view(), name="resource-access"),
    re_path(rf"^resources/{ADDRESS}/-/secret$", views.ResourceSecretView.as_view(), name="resource-secret"),
    re_path(rf"^resources/{ADDRESS}$", views.ResourceDetailView.as_view(), name="resource-detail"),
]
