from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operators' endpoints (/metrics, /livez, /readyz), request ids, task
    figures and backups."""

    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from ops import logs, taskstats

        logs.connect_signals()
        taskstats.connect_signals()
