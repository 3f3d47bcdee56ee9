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
    path("orgs", views.OrgListView.as_view(), name="org-list"),
    path("orgs/<str:org>", views.OrgDetailView.as_view(), name="org-detail"),
    path("orgs/<str:org>/members", views.OrgMemberListView.as_view(), name="org-member-list"),
    path("orgs/<str:org>/members/<str:who>", views.OrgMemberDetailView.as_view(),
         name="org-member-detail"),
    path("orgs/<str:org>/teams", views.OrgTeamListView.as_view(), name="org-team-list"),
    path("orgs/<str:org>/teams/<str:team>", views.OrgTeamDetailView.as_view(),
         name="org-team-detail"),
    path("orgs/<str:org>/teams/<str:team>/members", views.OrgTeamMemberListView.as_view(),
         name="org-team-member-list"),
    path("orgs/<str:org>/teams/<str:team>/members/<str:username>",
         views.OrgTeamMemberDetailView.as_view(), name="org-team-member-detail"),
    path("orgs/<str:org>/service-accounts", views.OrgServiceAccountListView.as_view(),
         name="org-service-account-list"),
    path("orgs/<str:org>/service-accounts/<str:name>", views.OrgServiceAccountDetailView.as_view(),
         name="org-service-account-detail"),
    path("orgs/<str:org>/service-accounts/<str:name>/tokens",
         views.OrgServiceAccountTokenListView.as_view(), name="org-service-account-token-list"),
    path("orgs/<str:org>/service-accounts/<str:name>/tokens/<int:token_id>",
         views.OrgServiceAccountTokenDetailView.as_view(),
         name="org-service-account-token-detail"),
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
        rf"^resources/{ADDRESS}/-/access/team/(?P<org>[^/]+)/(?P<team>[^/]+)$",
        views.ResourceTeamAccessView.as_view(),
        name="resource-access-team",
    ),
    re_path(rf"^resources/{ADDRESS}/-/transfer$", views.ResourceTransferView.as_view(),
            name="resource-transfer"),
    re_path(
        rf"^resources/{ADDRESS}/-/access/(?P<who>[^/]+)$",
        views.ResourceAccessDetailView.as_view(),
        name="resource-access-detail",
    ),
    re_path(rf"^resources/{ADDRESS}/-/access$", views.ResourceAccessView.as_view(), name="resource-access"),
    re_path(rf"^resources/{ADDRESS}/-/secret$", views.ResourceSecretView.as_view(), name="resource-secret"),
    re_path(rf"^resources/{ADDRESS}$", views.ResourceDetailView.as_view(), name="resource-detail"),
]
