"""Audit a live PostgreSQL database's tenant isolation set-up.

Read-only checks against ``pg_catalog``; each problem is a :class:`Finding`. A *scoped*
table is a table or partitioned table with a ``tenant_id`` column outside the system
schemas. An empty list means every rule below holds (``check`` names in brackets):

- every scoped table has RLS enabled [rls-enabled] *and* forced [rls-forced], and at least
  one policy [rls-policy]; every policy's USING and WITH CHECK reads the tenant setting
  [rls-policy-setting] and is not ``true`` or ``1 = 1`` [rls-policy-always-true];
- no policy turns a setting that was never set (NULL) into a match
  [rls-policy-null-setting]: a heuristic on ``pg_get_expr``'s text, flagging ``IS NULL``,
  ``IS NOT FALSE``, ``IS NOT TRUE``, ``IS UNKNOWN`` or ``IS [NOT] DISTINCT FROM`` inside a
  parenthesised group that reads the setting, and ``COALESCE`` over the setting with a
  fallback that is not a constant (``COALESCE(setting, '')`` and the shipped
  ``NULLIF(setting, '')`` pass). The database matrix's ``unset`` cells are the
  authoritative check: they run on a brand-new connection where the setting is NULL;
- the application role is neither superuser nor BYPASSRLS [app-role], owns no scoped
  table [app-role-owns-table], and holds no TRUNCATE or REFERENCES on one (RLS does not
  cover those) [app-role-privilege];
- the application role is not a member, directly or through any chain of grants, of a
  role that is superuser, BYPASSRLS or the owner of a scoped table
  [app-role-membership]. ``SET ROLE`` works for NOINHERIT members too, so every
  membership counts (on PostgreSQL 16+ also a grant made ``WITH SET FALSE, INHERIT
  FALSE``, which is conservative: such a grant escalates nothing);
- a fresh session of the application role does not start inside a tenant
  [tenant-setting-default]: the effective default of the setting from
  ``pg_db_role_setting`` (``ALTER ROLE app IN DATABASE db SET``, ``ALTER ROLE app SET``,
  ``ALTER DATABASE db SET`` / ``ALTER ROLE ALL IN DATABASE db SET``, ``ALTER ROLE ALL
  SET``, most specific first, as PostgreSQL applies them) is unset or empty. Defaults of
  roles the application role is a member of are not read: PostgreSQL applies only the
  login role's own defaults, and ``SET ROLE`` applies none. A value from
  ``postgresql.conf``, ``ALTER SYSTEM`` or the client's ``options`` is not seen here (the
  matrix's ``unset`` cells see it);
- every view reading a scoped table is ``security_invoker``, spelled in any way
  PostgreSQL's ``parse_bool`` accepts as true (otherwise it runs as its owner)
  [view-not-security-invoker];
- no SECURITY DEFINER function owned by a superuser or BYPASSRLS role mentions a scoped
  table by name [security-definer];
- no SECURITY DEFINER PL/pgSQL function runs dynamic SQL (``EXECUTE`` outside comments
  and string literals) when its owner is superuser, BYPASSRLS, or has the privileges of a
  scoped table's owner [security-definer-dynamic-sql]: the name match above cannot see a
  table named at run time. Owners count even under FORCE: the owner may ``ALTER TABLE ...
  NO FORCE`` / ``DISABLE ROW LEVEL SECURITY`` or drop the policy, and a dynamic string is
  where a caller's text becomes such a statement. Other languages, and invoker functions
  called from a definer, are not inspected.

Each kind of check is its own module, beside the catalog queries it reads, so a rule and
the SQL that feeds it are read together: :mod:`.roles` (the application role),
:mod:`.policies` (RLS on each table and its policies' text), :mod:`.objects` (views and
SECURITY DEFINER functions), with :mod:`.model` (findings, scoped tables) and
:mod:`.runner` (:func:`audit`, which walks the tables once and asks each of them).
"""

from tenancy.scoping.audit.model import Finding, ScopedTable, scoped_tables
from tenancy.scoping.audit.runner import audit, audit_engine

__all__ = ["Finding", "ScopedTable", "audit", "audit_engine", "scoped_tables"]
