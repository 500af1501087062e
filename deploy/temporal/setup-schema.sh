#!/bin/sh
# Temporal's two databases on PostgreSQL, created and migrated with temporal-sql-tool (the
# admin-tools image), the way that replaces the deprecated auto-setup image. Idempotent:
# run on every `up`; on an existing database only update-schema does anything (it applies
# the versioned migrations the server image's version needs, so upgrade admin-tools and
# server together, one minor version at a time).
set -eu
: "${SQL_PASSWORD:?set TEMPORAL_DB_PASSWORD}"
SCHEMA=/etc/temporal/schema/postgresql/v12
tool() { temporal-sql-tool --plugin postgres12 --ep "${POSTGRES_SEEDS}" -p "${DB_PORT:-5432}" -u "${POSTGRES_USER}" "$@"; }

for db in temporal temporal_visibility; do
  case "$db" in
    temporal) dir="$SCHEMA/temporal/versioned" ;;
    *) dir="$SCHEMA/visibility/versioned" ;;
  esac
  # create fails on an existing database, and setup-schema on an existing schema_version
  # table: both mean "done before". update-schema below fails loudly on anything real.
  tool --db "$db" create || echo "database $db exists"
  tool --db "$db" setup-schema -v 0.0 || echo "schema of $db is set up"
  tool --db "$db" update-schema -d "$dir"
done
echo "Temporal schemas are up to date"
