"""Per-tenant exports: a sealed snapshot of the tenant's data and a signed, expiring
download link (see :mod:`tenancy.exports.service`). The retention job deletes exports
12 days after creation (data class ``exports``, :mod:`tenancy.retention`)."""

from tenancy.errors import (
    ExportError,
    ExportGone,
    ExportLinkExpired,
    ExportLinkInvalid,
    ExportTenantMismatch,
)
from tenancy.exports.model import EXPORTS_TABLE, ExportRecord, create_schema
from tenancy.exports.service import (
    FORMATS,
    ExportDownload,
    ExportLink,
    ExportService,
    ExportSource,
)

__all__ = [
    "EXPORTS_TABLE",
    "FORMATS",
    "ExportDownload",
    "ExportError",
    "ExportGone",
    "ExportLink",
    "ExportLinkExpired",
    "ExportLinkInvalid",
    "ExportRecord",
    "ExportService",
    "ExportSource",
    "ExportTenantMismatch",
    "create_schema",
]
