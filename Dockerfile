# den server image: web (gunicorn), Celery worker and beat all run from it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEN_HOME=/var/lib/den
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 1000 den \
    && mkdir -p /var/lib/den && chown den /var/lib/den
WORKDIR /app
COPY pyproject.toml README.md ./
COPY den den
COPY registry registry
COPY compute compute
COPY frontend frontend
COPY manage.py ./
RUN pip install --no-cache-dir ".[server,node]"
USER den
EXPOSE 8000
CMD ["gunicorn", "den.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", \
     "--worker-class", "den.webserver.DenWorker", "--no-control-socket"]
