"""Typed refusals of the de-identification pipeline (each with a stable ``code``)."""

from __future__ import annotations

from tenancy.errors import TenancyError


class DeidError(TenancyError):
    """Base of de-identification errors."""

    code = "deid-error"


class ContributionRefused(DeidError):
    """The tenant's data-contribution setting is off, unknown, or could not be read:
    nothing is de-identified and nothing is returned."""

    code = "contribution-refused"

    def __init__(self, tenant_id: str, reason: str = "contribution-disabled") -> None:
        super().__init__("this tenant does not allow its data to be contributed")
        self.tenant_id = tenant_id
        self.reason = reason


class DeidSchemaError(DeidError, ValueError):
    """Base of field-schema errors; ``field`` names the offending field when known."""

    code = "deid-schema-error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidSchema(DeidSchemaError):
    """A ``RecordSchema`` was declared inconsistently (overlaps, empty, bad names)."""

    code = "deid-invalid-schema"


class RecordRejected(DeidSchemaError):
    """A record does not match the declared schema: an undeclared field (it might carry
    personal data, so it is never passed through) or a value of the wrong type. The
    whole batch is refused; nothing is returned."""

    code = "deid-record-rejected"

    def __init__(self, message: str, *, field: str | None = None, index: int) -> None:
        super().__init__(message, field=field)
        self.index = index
