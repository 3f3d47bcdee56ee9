from django.apps import AppConfig


class ComputeConfig(AppConfig):
    """Cluster runtime state, backends and the Celery tasks that drive them."""

    name = "compute"
