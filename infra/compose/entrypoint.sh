#!/bin/sh
# The image's entrypoint. Secrets arrive as files (compose `secrets:`, or a Kubernetes
# Secret volume), never as values in the compose file or a manifest: for every variable
# NAME_FILE=/path whose NAME is not set, export NAME with the file's content (trailing
# newlines dropped), unset NAME_FILE, then run the command. PGPASSWORD_FILE gives libpq its
# password; TENANCY_ROOT_KEY_FILE, TENANCY_AUDIT_KEY_FILE, ... the library's keys.
set -eu
for assignment in $(env | sed -n 's/^\([A-Z][A-Z0-9_]*\)_FILE=.*/\1/p'); do
  name="$assignment"
  eval "file=\${${name}_FILE}"
  eval "already=\${${name}:-}"
  if [ -n "$already" ]; then
    echo "entrypoint: both $name and ${name}_FILE are set" >&2
    exit 64
  fi
  if [ ! -r "$file" ]; then
    echo "entrypoint: ${name}_FILE names $file, which cannot be read" >&2
    exit 66
  fi
  value="$(cat "$file")"
  export "$name=$value"
  unset "${name}_FILE"
done
exec "$@"
