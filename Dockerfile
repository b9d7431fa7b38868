# One image for the project's own services (feast apply, and in later stages the stream
# workers, the inference API and the monitor). Kafka, Redis and MLflow use upstream images.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONPATH=/app PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install uv
COPY requirements.lock pyproject.toml ./
RUN uv pip install --system -r requirements.lock
COPY . .
RUN uv pip install --system --no-deps -e .
