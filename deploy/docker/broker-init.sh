#!/bin/sh
# compose job `broker-init` (the central image, as root): the broker's account file for the compose broker,
# made by `mes broker` like on a site (mosquitto/README.md). Idempotent: `init` keeps existing accounts,
# `add-service` sets the password from the environment again on every run.
set -eu
dir="${BROKER_DIR:-/broker}"  # the broker-config volume (a test runs this script with another directory)
mes broker init --config-dir "$dir" --persistence-dir /mosquitto/data --client-id "${MES_INGESTOR_CLIENT_ID:-mes-ingestor-1}"
MES_BROKER_PASSWORD="$INGESTOR_MQTT_PASSWORD" mes broker add-service --name ingestor --config-dir "$dir" \
    --client-id "${MES_INGESTOR_CLIENT_ID:-mes-ingestor-1}"
MES_BROKER_PASSWORD="$API_MQTT_PASSWORD" mes broker add-service --name api --config-dir "$dir"
# monitor: read-only account of the broker's health check (mosquitto_sub -E) and of diagnostics.
MES_BROKER_PASSWORD="$MONITOR_MQTT_PASSWORD" mes broker add-service --name monitor --config-dir "$dir"
# Stations: `docker compose run --rm --entrypoint mes broker-init broker add-station --station st09 --config-dir /broker`,
# then `docker compose restart mosquitto` (the plugin reads its file at start only).
