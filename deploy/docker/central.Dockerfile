# syntax=docker/dockerfile:1.7
# One image for the central services: `mes api`, `mes ingest`, `mes db upgrade` and the other `mes` commands.
# Build from the repository root:  docker build -f deploy/docker/central.Dockerfile -t withforce-mes-central .
# (compose.yaml does this). NOT built or run on the machine this was written on (no Docker engine there):
# tests/test_deploy_artifacts.py checks it statically (every COPY source exists, non-root user, HEALTHCHECK).
# The same image runs on-prem and on AWS (ECS/EC2): only the environment differs (docs/ops/deploy.md).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (pyproject's packages and README as its long description).
COPY pyproject.toml README.md ./
COPY mes_contracts/ mes_contracts/
COPY cloud_api/ cloud_api/
COPY edge_gateway/ edge_gateway/
COPY db/ db/
COPY deploy/ deploy/
COPY line_simulator/ line_simulator/
COPY mes_cli/ mes_cli/
COPY printer_emulator/ printer_emulator/
COPY mes_labels/ mes_labels/
COPY station_ui/ station_ui/
RUN python -m venv /opt/venv && /opt/venv/bin/pip install ".[central]"

FROM python:3.11-slim-bookworm
# fonts-nanum: Korean text on labels and in the eDHR PDF (mes_labels/fonts.py looks for NanumGothic there).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-nanum \
    && rm -rf /var/lib/apt/lists/*
# mes: the services' own account. Group mosquitto with the gid of the eclipse-mosquitto image (1883): the
# compose broker-init job writes the broker's account file root:mosquitto 0640 (mes_cli/broker.py) for it.
RUN groupadd --system --gid 10001 mes \
    && useradd --system --uid 10001 --gid mes --home-dir /var/lib/withforce-mes --shell /usr/sbin/nologin mes \
    && groupadd --system --gid 1883 mosquitto \
    && install -d -o mes -g mes -m 0750 /var/lib/withforce-mes /var/lib/withforce-mes/firmware
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/lib/withforce-mes/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MES_API_HOST=0.0.0.0 \
    MES_FIRMWARE_LOCAL_DIR=/var/lib/withforce-mes/firmware
USER mes
WORKDIR /var/lib/withforce-mes
EXPOSE 8000 9464
# The clean stop of every `mes` service (mes_cli/main.py _restore_ctrl_c); the ingestor ignores nothing else.
STOPSIGNAL SIGINT
# The API's /health (database answers). compose.yaml gives the ingestor its own check and the one-shot jobs none.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/withforce-mes/healthcheck.py", "api"]
ENTRYPOINT ["mes"]
CMD ["api"]
