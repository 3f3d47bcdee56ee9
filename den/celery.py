"""The Celery app: workers bring clusters up, watch them and stop them.

Configured from Django settings (``CELERY_*``); the embedded default broker is
kombu's filesystem transport, so a single machine needs no broker server.

A worker holds den's keys and database credentials in its environment and
memory, and local cluster daemons run beside it: it marks itself
non-dumpable first (its pool processes inherit that), so that no process of
the same OS user can read its ``/proc/<pid>/environ`` or memory.
"""

import os

from celery import Celery

from den.node.hardening import set_non_dumpable

set_non_dumpable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")

app = Celery("den")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
