# syntax=docker/dockerfile:1
# ocpp-gateway: a slim image running as a non-root user (uid 10001). See docs/operators.md,
# "Container and Kubernetes".
#
#   docker build -t ocpp-gateway .
#   docker run -d --name ogw -p 9000:9000 -p 9443:9443 \
#       -v ogw-certs:/app/certs -v ogw-data:/app/data ocpp-gateway
#   docker exec ogw ocpp-gateway cp add CP001 --profile 0
#   docker run --rm -v ogw-certs:/app/certs -v ogw-data:/app/data ocpp-gateway ocpp-gateway ca list
#
# The command is `ocpp-gateway serve` by default; any other command line replaces it (the init
# stays in front). The configuration is /etc/ocpp-gateway/gateway.toml (OCPP_GATEWAY_CONFIG, a
# default is shipped) plus OCPP_GATEWAY_<SECTION>_<KEY> variables, for `serve` and the CLI alike.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: wheels of the gateway and of every dependency ------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY security ./security
# Every dependency ships wheels for amd64 and arm64; on other architectures install a compiler
# here (apt-get install build-essential): it stays in this stage.
RUN pip wheel --wheel-dir /wheels .

# -- runtime: the wheels installed, no build tools, no sources ---------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    OCPP_GATEWAY_CONFIG=/etc/ocpp-gateway/gateway.toml
# tini is PID 1: it passes SIGTERM on to the gateway (which drains) and reaps orphans.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin gateway
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels ocpp-gateway
COPY deploy/container/gateway.toml /etc/ocpp-gateway/gateway.toml
COPY --chmod=0755 deploy/container/healthcheck.py /usr/local/bin/ocpp-gateway-healthcheck
RUN mkdir -p /app/certs /app/data \
    && chown 10001:10001 /app/certs /app/data \
    && chmod 0750 /app/data

WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# The CA store, records/tokens/audit log (without Redis), and the configuration.
VOLUME ["/app/certs", "/app/data", "/etc/ocpp-gateway"]
# ws (profiles 0-1), wss (profiles 2-3: the gateway terminates TLS itself), status listener
# (/healthz, /readyz, /metrics).
EXPOSE 9000 9443 9100
STOPSIGNAL SIGTERM
# Liveness only: the process answers. Kubernetes ignores HEALTHCHECK: its readiness probe uses
# /readyz and its liveness probe /healthz on the status port (deploy/kubernetes).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["ocpp-gateway-healthcheck", "http://127.0.0.1:9100/healthz", "http://127.0.0.1:9000/healthz"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ocpp-gateway", "serve"]
