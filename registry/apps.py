from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Users, tokens, resources, versions, sharing, audit and the REST API."""

    name = "registry"
    verbose_name = "Registry"

    def ready(self) -> None:
        from django.conf import settings

        from registry.authcache import connect_invalidation_signals
        from registry.credentials import check_encryption_keys

        # Every den process (web, worker, manage.py) stops here, at start,
        # rather than at the first secret it reads.
        check_encryption_keys(list(settings.DEN_ENCRYPTION_KEYS))
        connect_invalidation_signals()
