#!/bin/sh
# The role the panel and the watcher connect as: it may read and write the panel's tables, and
# only SELECT and INSERT the audit log (migration 0011); it owns nothing, so it can neither alter
# nor drop a table or its triggers. Migrations run as the database's owner ($POSTGRES_USER).
#
# The postgres image runs this once, as the superuser, when it first initialises its volume
# (docker-compose.yml mounts deploy/postgres at /docker-entrypoint-initdb.d). For a database that
# already exists, run it by hand as a superuser with the same variables; it is idempotent:
#   docker compose exec -e OGPANEL_DB_APP_PASSWORD=... db sh /docker-entrypoint-initdb.d/10-ogpanel-runtime-role.sh
#
# POSTGRES_USER      the owner: migrations run as it (its tables get the grants by default privileges)
# POSTGRES_DB        the panel's database
# OGPANEL_DB_APP_USER      the runtime role (default ogpanel_app)
# OGPANEL_DB_APP_PASSWORD  its password (required)
# PGUSER, PGHOST, ...      how psql connects (default: the owner, over the image's local socket)
set -eu
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}" "${OGPANEL_DB_APP_PASSWORD:?set OGPANEL_DB_APP_PASSWORD}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${PGUSER:-$POSTGRES_USER}" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v app="${OGPANEL_DB_APP_USER:-ogpanel_app}" -v password="$OGPANEL_DB_APP_PASSWORD" \
    -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', :'app')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
ALTER ROLE :"app" PASSWORD :'password';

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CREATE ON SCHEMA public TO :"owner";
GRANT CONNECT ON DATABASE :"db" TO :"app";
GRANT USAGE ON SCHEMA public TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app";

-- A database migrated before this ran: the same for the tables already there, and migration
-- 0011's rule again for the audit log.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";
SELECT format('REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON ogpanel_auditevent FROM %I', :'app')
WHERE to_regclass('ogpanel_auditevent') IS NOT NULL \gexec
SQL
