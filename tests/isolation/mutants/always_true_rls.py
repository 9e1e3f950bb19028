"""Deliberately broken RLS set-ups (test fixtures), each undone when its block ends.

- :func:`always_true_rls`: the table's tenant policy is rewritten to ``USING (true) WITH
  CHECK (true)``: RLS stays enabled and forced, and admits every row.
- :func:`unforced_app_owned`: ``NO FORCE ROW LEVEL SECURITY`` and the application role made
  the table's owner: RLS does not apply to a table's owner unless it is forced.

They exist so that the database access matrix and the auditor can prove they catch them.
Run as the owner (a superuser in tests). Never use them outside tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

from tenancy.scoping.rls import POLICY_NAME

_POLICY = text("""
    SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)
    FROM pg_policy WHERE polrelid = to_regclass(:table) AND polname = :policy
""")
_OWNER = text("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(:table)")


@contextmanager
def always_true_rls(
    owner: Engine, *, table: str = "worklogs", policy: str = POLICY_NAME
) -> Iterator[None]:
    """Make ``table``'s tenant policy admit every row for reads and writes; restore it."""
    quote = owner.dialect.identifier_preparer.quote
    name, policy_name = quote(table), quote(policy)
    with owner.begin() as conn:
        using, check = conn.execute(_POLICY, {"table": name, "policy": policy}).one()
        conn.execute(text(f"ALTER POLICY {policy_name} ON {name} USING (true) WITH CHECK (true)"))
    try:
        yield
    finally:
        with owner.begin() as conn:
            conn.execute(
                text(f"ALTER POLICY {policy_name} ON {name} USING ({using}) WITH CHECK ({check})")
            )


@contextmanager
def unforced_app_owned(owner: Engine, app_role: str, *, table: str = "worklogs") -> Iterator[None]:
    """Stop forcing RLS on ``table`` and hand it to ``app_role``; restore both."""
    quote = owner.dialect.identifier_preparer.quote
    name = quote(table)
    with owner.begin() as conn:
        previous = conn.execute(_OWNER, {"table": name}).scalar_one()
        conn.execute(text(f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY"))
        conn.execute(text(f"ALTER TABLE {name} OWNER TO {quote(app_role)}"))
    try:
        yield
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"ALTER TABLE {name} OWNER TO {quote(previous)}"))
            conn.execute(text(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY"))
