#!/bin/sh
# Creates the files compose.yaml's `secrets:` name, in infra/compose/secrets/ (or $1), each
# once: an existing file is kept, so rerunning never rotates a key under running data.
# Nothing here is committed (secrets/.gitignore). The directory is 0700; the files are
# 0644 because compose bind-mounts them into containers that run as other users
# (postgres, pgbouncer, uid 10001), and only this directory's owner can reach them.
set -eu
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
chmod 0700 "$dir"

random_b64() { python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'; }
random_b64url() { python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))'; }
random_hex() { python3 -c 'import os; print(os.urandom(32).hex())'; }

create() {  # create NAME GENERATOR
  if [ ! -s "$dir/$1" ]; then
    "$2" > "$dir/$1"
    chmod 0644 "$dir/$1"
    echo "created $dir/$1"
  fi
}

create postgres_password random_hex        # the superuser's, for the init scripts only
create tenancy_owner_password random_hex   # migrations (tenancy db migrate)
create tenancy_app_password random_hex     # the services, through PgBouncer
create tenancy_root_key random_b64         # TENANCY_ROOT_KEY: base64 of 32 bytes
create tenancy_audit_key random_hex        # TENANCY_AUDIT_KEY: hex, >= 32 bytes
create tenancy_export_signing_key random_b64url  # TENANCY_EXPORT_SIGNING_KEY
create tenancy_tickets_secret random_hex   # TENANCY_TICKETS_SECRET (the console's webhook)

# PgBouncer's auth_file: the application role and its password, as PgBouncer reads it
# ("name" "password"); PgBouncer answers SCRAM for it and logs in to PostgreSQL with it.
if [ ! -s "$dir/pgbouncer_userlist" ]; then
  printf '"tenancy_app" "%s"\n' "$(cat "$dir/tenancy_app_password")" > "$dir/pgbouncer_userlist"
  chmod 0644 "$dir/pgbouncer_userlist"
  echo "created $dir/pgbouncer_userlist"
fi
