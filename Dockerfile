# One image for every Tandem process; docker-compose.yml picks the command.
# A fixed patch version, 3.11.10 or newer: older ones write email headers unsafely (CVE-2024-6923, README).
# PYTHON_IMAGE: another image with the same layout (`python` on the PATH), e.g. a local mirror's.
ARG PYTHON_IMAGE=python:3.11.14-slim

# Build: the dependencies first (a layer kept while pyproject.toml is unchanged), then Tandem itself,
# into a virtual environment the final stage copies whole. The base image has no compiler: a
# dependency without a wheel fails the build.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/tandem
COPY pyproject.toml ./
RUN mkdir shared services simulation && /opt/tandem/bin/pip install . \
    && /opt/tandem/bin/pip uninstall -y tandem
COPY shared ./shared
COPY services ./services
RUN /opt/tandem/bin/pip install --no-deps . && rm -rf /opt/tandem/lib/python*/site-packages/pip \
    /opt/tandem/bin/pip*

# Run: the environment alone (without pip), as an unprivileged user; no compiler, no build files,
# no secrets.
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PATH=/opt/tandem/bin:$PATH TANDEM_BIND_HOST=0.0.0.0 TANDEM_VAR_DIR=/var/lib/tandem
COPY --from=build /opt/tandem /opt/tandem
# /var/lib/tandem/metrics: made here so a new named volume mounted on it belongs to tandem
RUN useradd --system --home-dir /var/lib/tandem --no-create-home tandem \
    && mkdir -p /var/lib/tandem/metrics && chown -R tandem /var/lib/tandem
USER tandem
WORKDIR /var/lib/tandem
CMD ["tandem", "--help"]
