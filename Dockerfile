# One image for the project's own services (secrets and init jobs, stream workers, the
# inference API, the scorer, the monitor and the learner). Kafka, Redis, Prometheus and
# Grafana use upstream images. Runtime dependencies only (requirements.runtime.lock: no test
# tools), and the services run as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONPATH=/app PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install uv
COPY requirements.runtime.lock pyproject.toml ./
RUN uv pip install --system -r requirements.runtime.lock
COPY . .
RUN uv pip install --system --no-deps -e . \
 && useradd --uid 10001 --create-home app \
 && mkdir -p /data/secrets /data/mlflow /signing /kafka-admin /app/feature_repo/data \
 && chown -R app /data /signing /kafka-admin /app/feature_repo/data
USER app
