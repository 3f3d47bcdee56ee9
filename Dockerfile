# den server image: web (gunicorn), Celery worker and beat all run from it
# (docker-compose.yml runs den/processes.py's commands).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEN_HOME=/var/lib/den \
    DEN_STATIC_ROOT=/app/static
# openssh-client: the ssh backend; postgresql-client: pg_dump and pg_restore
# for `manage.py den_backup` / `den_restore` (README: Backup and restore).
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client \
    postgresql-client && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 1000 den \
    && mkdir -p /var/lib/den && chown den /var/lib/den
WORKDIR /app
COPY pyproject.toml README.md ./
COPY den den
COPY registry registry
COPY compute compute
COPY frontend frontend
COPY rhcompat rhcompat
COPY ops ops
COPY manage.py ./
RUN pip install --no-cache-dir ".[server,node]"
# Static files are collected once, into the image (root's, readable by all),
# with throwaway keys in a throwaway DEN_HOME: no key is baked into a layer.
RUN DEN_HOME=/tmp/den-build python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/den-build
USER den
EXPOSE 8000
CMD ["gunicorn", "--config", "python:den.gunicorn_conf", "--bind", "0.0.0.0:8000", \
     "den.wsgi:application"]
