#!/bin/sh
# Entry point of the bikeshare image.
#
# SageMaker starts a hosting container as `docker run <image> serve`: that runs the endpoint on
# port 8080 (SAGEMAKER_BIND_TO_PORT if SageMaker sets it). When the model folder (SM_MODEL_DIR,
# default /opt/ml/model) holds bundles, they are served; otherwise the endpoint loads the registry
# alias from BIKESHARE_MLFLOW_TRACKING_URI / BIKESHARE_SERVE_ALIAS and follows it. Workers default
# to one per CPU (BIKESHARE_SERVE_WORKERS overrides). Any other command runs as `bikeshare <args>`.
#
# `bikeshare serve` refuses to listen beyond loopback without an API key. SageMaker reaches the
# container only through InvokeEndpoint, which IAM authenticates and which cannot send our
# X-API-Key, so `serve` opts out explicitly (BIKESHARE_SERVE_ALLOW_UNAUTHENTICATED=true) unless
# the environment says otherwise. Without a key the state-changing routes stay disabled (403).
set -eu

if [ "$#" -eq 0 ]; then
    set -- serve
fi

if [ "$1" != "serve" ]; then
    exec bikeshare "$@"
fi
shift

export BIKESHARE_SERVE_ALLOW_UNAUTHENTICATED="${BIKESHARE_SERVE_ALLOW_UNAUTHENTICATED:-true}"
model_dir="${SM_MODEL_DIR:-/opt/ml/model}"
port="${SAGEMAKER_BIND_TO_PORT:-${BIKESHARE_SERVE_PORT:-8080}}"
workers="${BIKESHARE_SERVE_WORKERS:-$(nproc 2>/dev/null || echo 1)}"

if [ -d "$model_dir" ] && [ -n "$(find "$model_dir" -maxdepth 3 -name bundle.json -print 2>/dev/null | head -n 1)" ]; then
    set -- --model-dir "$model_dir" "$@"
fi

exec bikeshare serve --host "${BIKESHARE_SERVE_HOST:-0.0.0.0}" --port "$port" --workers "$workers" "$@"
