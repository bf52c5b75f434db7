# The bikeshare image: the SageMaker endpoint (`serve`) and every other `bikeshare` command (the
# ECS jobs override the entry point with `bikeshare`). Built by .github/workflows/cd_staging.yml.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from the hash-pinned lock, so code changes reuse this layer.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
# LightGBM's wheel links the system OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 bikeshare \
    && mkdir -p /opt/ml/model \
    && chown bikeshare /opt/ml/model
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BIKESHARE_SERVE_HOST=0.0.0.0 \
    BIKESHARE_SERVE_PORT=8080 \
    BIKESHARE_STATE_DIR=/tmp/bikeshare
USER bikeshare
WORKDIR /home/bikeshare
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["serve"]
