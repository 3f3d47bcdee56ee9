from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Users, tokens, resources, versions, sharing, audit and the REST API."""

    name = "registry"
    verbose_name = "Registry"

    def ready(self) -> None:
        from registry.authcache import connect_invalidation_signals

        connect_invalidation_signals()
