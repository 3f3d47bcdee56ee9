"""ASGI entry point, for deployments that front Django with an ASGI server.

Non-dumpable, like the WSGI one (den/wsgi.py says why).
"""

import os

from django.core.asgi import get_asgi_application

from den.node.hardening import set_non_dumpable

set_non_dumpable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")
application = get_asgi_application()
