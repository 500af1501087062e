# The DealLens image: the worker by default; the same image runs the migrations
# (`python -m starter migrate`), the unsubscribe page (`python -m deallens.web`) and the codec
# server (`python -m codec_server`). docker-compose.temporal.yml builds and runs it.
#
#   docker build -t deallens .
#
# Two stages: dependencies are built in the first (compilers stay there), the runtime stage
# holds the virtualenv and runs as an unprivileged user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/deallens
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir deallens workflows activities && touch deallens/__init__.py workflows/__init__.py activities/__init__.py \
    worker.py starter.py schedules.py devstack.py temporal_client.py codec.py codec_server.py \
    && /opt/deallens/bin/pip install . && /opt/deallens/bin/pip uninstall -y deallens-workers
COPY deallens deallens
COPY workflows workflows
COPY activities activities
COPY worker.py starter.py schedules.py devstack.py temporal_client.py codec.py codec_server.py ./
RUN /opt/deallens/bin/pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/deallens/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    METRICS_BIND=0.0.0.0:9464
RUN groupadd --system --gid 10001 deallens \
    && useradd --system --uid 10001 --gid deallens --home-dir /home/deallens --create-home deallens
COPY --from=build /opt/deallens /opt/deallens
WORKDIR /home/deallens
USER deallens:deallens
EXPOSE 9464
# Healthy while the worker answers on its metrics endpoint (METRICS_BIND): the process is up
# and serving. A worker that cannot reach Temporal or its database at start-up exits with one
# line (and the restart policy brings it back) rather than lingering.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('METRICS_BIND', ':9464').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=4)"]
CMD ["python", "-m", "worker"]
