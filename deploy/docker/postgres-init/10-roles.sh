#!/bin/sh
# Run once by the PostgreSQL image's entrypoint when the data volume is new (docker-entrypoint-initdb.d), as
# POSTGRES_USER (mes_owner: the schema owner that `mes db upgrade` connects as). Creates the login roles:
#   mes_app      the API's and the ingestor's (MES_DATABASE_URL); the migrations grant it the application's rights
#   mes_grafana  Grafana's, read-only (migration 0013 grants it the reporting views)
# Passwords come from the environment and go in as psql variables (quoted by psql, never spliced into SQL text).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$APP_DB_PASSWORD" -v grafana_password="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE mes_app LOGIN PASSWORD :'app_password';
CREATE ROLE mes_grafana LOGIN PASSWORD :'grafana_password';
ALTER ROLE mes_grafana SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"DBNAME" TO mes_app, mes_grafana;
SQL
