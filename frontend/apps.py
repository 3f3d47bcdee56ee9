from django.apps import AppConfig


class FrontendConfig(AppConfig):
    """The server-rendered web UI."""

    name = "frontend"
