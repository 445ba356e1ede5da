# One image for every Tandem process; docker-compose.yml picks the command.
# A fixed patch version, 3.11.10 or newer: older ones write email headers unsafely (CVE-2024-6923, README).
FROM python:3.11.14-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TANDEM_BIND_HOST=0.0.0.0 TANDEM_VAR_DIR=/var/lib/tandem
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# /var/lib/tandem/metrics: made here so a new named volume mounted on it belongs to tandem
RUN pip install . && useradd --system --home /app tandem && mkdir -p /var/lib/tandem/metrics \
    && chown -R tandem /var/lib/tandem
USER tandem
CMD ["tandem", "--help"]
