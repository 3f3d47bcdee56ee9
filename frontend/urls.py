"""Web UI routes. Included last in ``den.urls``: a resource's page is its
address (``/<owner>/<name>``), and pages about it hang under ``/-/``."""

from django.urls import path, re_path

from frontend.views import auth, clusters, home, orgs, resources, settings

app_name = "frontend"

# An owner and one or more name segments, none of them the reserved "-".
ADDRESS = r"(?P<address>[^/]+/(?:(?!/-/).)+?)"
OWNER = r"(?P<owner>[A-Za-z0-9][A-Za-z0-9._-]{0,38})"

urlpatterns = [
    path("", home.DashboardView.as_view(), name="dashboard"),
    path("login", auth.LoginPageView.as_view(), name="login"),
    path("logout", auth.LogoutPageView.as_view(), name="logout"),
    path("password-reset", auth.PasswordResetPageView.as_view(), name="password-reset"),
    path("password-reset/sent", auth.PasswordResetSentView.as_view(), name="password-reset-sent"),
    path("password-reset/done", auth.PasswordResetDonePageView.as_view(), name="password-reset-done"),
    path(
        "password-reset/<uidb64>/<token>",
        auth.PasswordResetConfirmPageView.as_view(),
        name="password-reset-confirm",
    ),
    path("invite/<str:token>", auth.InvitationView.as_view(), name="invitation"),
    path("search", home.SearchView.as_view(), name="search"),
    path("settings/tokens", settings.TokenSettingsView.as_view(), name="settings-tokens"),
    path(
        "settings/tokens/<int:token_id>/revoke",
        settings.TokenRevokeView.as_view(),
        name="settings-token-revoke",
    ),
    path("settings/profile", settings.ProfileView.as_view(), name="settings-profile"),
    path("settings/password", settings.PasswordChangeView.as_view(), name="settings-password"),
    path("settings/orgs", orgs.OrgListView.as_view(), name="settings-orgs"),
    re_path(rf"^{OWNER}/-/settings$", orgs.OrgSettingsView.as_view(), name="org-settings"),
    re_path(
        rf"^{ADDRESS}/-/versions/(?P<number>[0-9]{{1,9}})/restore$",
        resources.VersionRestoreView.as_view(),
        name="resource-version-restore",
    ),
    re_path(
        rf"^{ADDRESS}/-/versions/(?P<number>[0-9]{{1,9}})$",
        resources.VersionDiffView.as_view(),
        name="resource-version",
    ),
    re_path(rf"^{ADDRESS}/-/versions$", resources.VersionListView.as_view(), name="resource-versions"),
    re_path(
        rf"^{ADDRESS}/-/access/revoke$", resources.AccessRevokeView.as_view(), name="resource-access-revoke"
    ),
    re_path(rf"^{ADDRESS}/-/access$", resources.AccessView.as_view(), name="resource-access"),
    re_path(rf"^{ADDRESS}/-/audit$", resources.AuditView.as_view(), name="resource-audit"),
    re_path(rf"^{ADDRESS}/-/settings$", resources.SettingsView.as_view(), name="resource-settings"),
    re_path(
        rf"^{ADDRESS}/-/description$", resources.DescriptionView.as_view(), name="resource-description"
    ),
    re_path(
        rf"^{ADDRESS}/-/visibility$", resources.VisibilityView.as_view(), name="resource-visibility"
    ),
    re_path(rf"^{ADDRESS}/-/delete$", resources.DeleteView.as_view(), name="resource-delete"),
    re_path(rf"^{ADDRESS}/-/cluster$", clusters.ClusterLiveView.as_view(), name="cluster"),
    re_path(rf"^{ADDRESS}/-/cluster/up$", clusters.ClusterUpView.as_view(), name="cluster-up"),
    re_path(rf"^{ADDRESS}/-/cluster/stop$", clusters.ClusterStopView.as_view(), name="cluster-stop"),
    re_path(
        rf"^{ADDRESS}/-/cluster/teardown$", clusters.ClusterTeardownView.as_view(),
        name="cluster-teardown",
    ),
    re_path(
        rf"^{ADDRESS}/-/cluster/autostop$", clusters.ClusterAutostopView.as_view(),
        name="cluster-autostop",
    ),
    re_path(rf"^{ADDRESS}$", resources.ResourceDetailView.as_view(), name="resource"),
    re_path(rf"^{OWNER}$", home.NamespaceView.as_view(), name="namespace"),
]
