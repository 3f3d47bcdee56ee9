"""``/rh/`` routes: the paths the runhouse 0.0.42 client appends to its
``api_server_url``. A resource is a runhouse URI (``alice:team:x``, one path
segment); anything else under ``/rh/`` is a JSON 404."""

from django.urls import path, re_path

from rhcompat import views

URI = r"(?P<uri>[^/]+)"

urlpatterns = [
    path("user", views.UserView.as_view(), name="rh-user"),
    path("user/config", views.UserConfigView.as_view(), name="rh-user-config"),
    path("user/secret", views.SecretListView.as_view(), name="rh-secret-list"),
    re_path(rf"^user/secret/{URI}$", views.SecretView.as_view(), name="rh-secret"),
    path("resource", views.ResourceListView.as_view(), name="rh-resource-list"),
    re_path(rf"^resource/history/{URI}$", views.ResourceHistoryView.as_view(),
            name="rh-resource-history"),
    re_path(rf"^resource/{URI}/users/access$", views.ResourceAccessView.as_view(),
            name="rh-resource-access"),
    re_path(rf"^resource/{URI}/user/(?P<username>[^/]+)$", views.ResourceUserView.as_view(),
            name="rh-resource-user"),
    re_path(rf"^resource/{URI}/cluster/status$", views.ClusterStatusView.as_view(),
            name="rh-cluster-status"),
    re_path(rf"^resource/{URI}/logs$", views.ClusterLogsView.as_view(), name="rh-cluster-logs"),
    re_path(rf"^resource/{URI}$", views.ResourceView.as_view(), name="rh-resource"),
    path("auth/token/cluster", views.ClusterTokenView.as_view(), name="rh-cluster-token"),
    re_path(rf"^auth/token/cluster/{URI}$", views.ClusterTokenCheckView.as_view(),
            name="rh-cluster-token-check"),
    re_path(r"^.*$", views.NotFoundView.as_view(), name="rh-not-found"),
]
