"""WSGI entry point; production serves it with gunicorn's sync workers."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")
application = get_wsgi_application()
