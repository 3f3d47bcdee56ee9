from django.apps import AppConfig


class ComputeConfig(AppConfig):
    """Cluster runtime state, backends and the Celery tasks that drive them."""

    name = "compute"

    def ready(self) -> None:
        # Make den's configured Celery app the current one in every process
        # (web servers included), so that enqueuing a task uses den's broker
        # and its Django-aware task class (``delay_on_commit``). ``den`` itself
        # is the client package and must not import Celery.
        import den.celery  # noqa: F401
        from compute import signals  # noqa: F401
