"""The database access matrix: evidence, cell by cell, that PostgreSQL RLS holds.

Connected as the application role, the matrix runs what a leaky application would run
against every scoped table: with no tenant, and with each tenant's setting against its
own rows and every other tenant's rows (SELECT, INSERT, UPDATE, DELETE; the UPDATE cell
against another tenant also tries to move own rows to it, which WITH CHECK must refuse).

"No tenant" comes in two kinds of four cells each. Setting ``none``: the setting set to
``''`` in the transaction (what a pooled session reads after an earlier transaction's
``set_config(..., true)``). Setting ``unset``: a brand-new session of the same role, where
``current_setting(name, true)`` is NULL; a policy such as ``... OR current_setting(...) IS
NULL`` leaks only there. When a new session does not start with NULL (a role or database
default, a pooler's reused session), the ``unset`` cells say so in their detail, and one
that RLS held is ``vacuous``: the never-set case was not reached. When no new session
opens, they are ``error``.

Each cell says ``enforced`` (RLS refused, or saw nothing while the other tenant really has
rows), ``denied`` (refused by GRANTs), ``leaked``, ``vacuous`` (nothing to prove, with the
reason) or ``error``. The live auditor's findings (:func:`tenancy.scoping.audit.audit`)
travel with it.

Everything runs in one transaction that is always rolled back (the ``unset`` cells in
another, on their own session), each cell in its own savepoint that is rolled back too,
under a short ``lock_timeout``: the matrix never changes data, even on a database whose
RLS is broken. Identifiers are quoted by the dialect; values are bound parameters.
"""

from tenancy.errors import MatrixError
from tenancy.testing.dbmatrix.model import (
    KIND,
    LOCK_TIMEOUT,
    NONE,
    OPERATIONS,
    OWN,
    UNSET,
    VERSION,
    Cell,
    DatabaseMatrix,
    Outcome,
)
from tenancy.testing.dbmatrix.runner import access_matrix, access_matrix_for_url

__all__ = [
    "KIND",
    "LOCK_TIMEOUT",
    "NONE",
    "OPERATIONS",
    "OWN",
    "UNSET",
    "VERSION",
    "Cell",
    "DatabaseMatrix",
    "MatrixError",
    "Outcome",
    "access_matrix",
    "access_matrix_for_url",
]
