from django.apps import AppConfig


class RhcompatConfig(AppConfig):
    name = "rhcompat"
    label = "rhcompat"
    verbose_name = "Runhouse compatibility"
    default_auto_field = "django.db.models.BigAutoField"
