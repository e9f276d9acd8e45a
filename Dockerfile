# ocpp-gateway: slim image, non-root, configuration and CA store as volumes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY security ./security
RUN pip install . && useradd --system --uid 10001 --home /app gateway \
    && mkdir -p /app/certs /app/data /etc/ocpp-gateway && chown gateway /app/certs /app/data

USER gateway
VOLUME ["/app/certs", "/app/data", "/etc/ocpp-gateway"]
EXPOSE 9000 9443
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9000/healthz').status != 200)"
ENTRYPOINT ["ocpp-gateway", "serve"]
