"""The Celery app: workers bring clusters up, watch them and stop them.

Configured from Django settings (``CELERY_*``); the embedded default broker is
kombu's filesystem transport, so a single machine needs no broker server.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")

app = Celery("den")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
