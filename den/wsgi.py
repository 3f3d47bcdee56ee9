"""WSGI entry point; production serves it with gunicorn's sync workers.

Marks the process non-dumpable before Django loads (gunicorn's workers,
forked from here, inherit it): no process of the same OS user can read den's
keys from its ``/proc/<pid>/environ`` or memory.
"""

import os

from django.core.wsgi import get_wsgi_application

from den.node.hardening import set_non_dumpable

set_non_dumpable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")
application = get_wsgi_application()
