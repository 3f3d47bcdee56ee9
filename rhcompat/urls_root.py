"""``/rh`` itself: a JSON 404, never the UI's namespace page."""

from django.urls import path

from rhcompat import views

urlpatterns = [path("", views.NotFoundView.as_view(), name="rh-root")]
