#!/bin/sh
# Run once by the PostgreSQL image's entrypoint on a new data volume, while its temporary server runs (socket
# only): the pgBackRest stanza (deploy/docker/pgbackrest.conf), so WAL archiving (archive_command in
# compose.yaml) works from the first segment. Not fatal: a database without backups still serves the factory,
# and `docker compose exec db pgbackrest --stanza=mes check` / the backup-age alert say what is wrong.
if pgbackrest --stanza=mes stanza-create; then
    echo "pgbackrest: stanza mes created"
else
    echo "pgbackrest: stanza-create FAILED: WAL is not archived until it succeeds (docs/ops/deploy.md)" >&2
fi
