# One image for every Tandem process; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TANDEM_BIND_HOST=0.0.0.0 TANDEM_VAR_DIR=/var/lib/tandem
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install . && useradd --system --home /app tandem && mkdir -p /var/lib/tandem && chown tandem /var/lib/tandem
USER tandem
CMD ["tandem", "--help"]
