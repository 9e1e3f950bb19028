#!/bin/sh
# Runs once, when the PostgreSQL container initialises an empty data directory, after
# 10-roles.sql (infra/sql/roles.sql, mounted beside it): the schema grants of
# docs/operations/deploy.md, and the two roles' passwords, which psql reads from the
# secret files itself (never on a command line or in the environment).
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\set owner_password `cat /run/secrets/tenancy_owner_password`
\set app_password `cat /run/secrets/tenancy_app_password`
GRANT CREATE, USAGE ON SCHEMA public TO tenancy_owner;
GRANT USAGE ON SCHEMA public TO tenancy_app;
ALTER ROLE tenancy_owner PASSWORD :'owner_password';
ALTER ROLE tenancy_app PASSWORD :'app_password';
SQL
