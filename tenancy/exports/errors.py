"""Refusals of an export download link. Each has a stable ``code``; none says whether
another tenant's export exists.

Until ``tenancy.problems`` has entries of its own for them, the refusals that are "no
such export" for the caller also derive from :class:`tenancy.errors.NotFound`, so the
problem table answers 404 for them; :class:`ExportLinkExpired` needs an entry (410).
"""

from __future__ import annotations

from tenancy.errors import NotFound, TenancyError


class ExportError(TenancyError):
    """Base for export refusals."""

    code = "export-error"


class ExportLinkInvalid(ExportError, NotFound):
    """The link is malformed or its signature does not verify (tampered, or signed with
    a key this service does not hold). HTTP: 404."""

    code = "export-link-invalid"


class ExportLinkExpired(ExportError):
    """The link's access window has closed. HTTP: 410 (needs a ``tenancy.problems``
    entry; without one it is a 500)."""

    code = "export-link-expired"


class ExportTenantMismatch(ExportError, NotFound):
    """A valid link of another tenant than the caller's. HTTP: 404, like a link that
    names nothing, so the answer reveals nothing."""

    code = "export-tenant-mismatch"


class ExportGone(ExportError, NotFound):
    """The export no longer exists (deleted by retention or erasure). HTTP: 404 now,
    410 once ``tenancy.problems`` has an entry."""

    code = "export-gone"
