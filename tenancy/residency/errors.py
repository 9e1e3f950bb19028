"""The typed refusal of residency: a tenant's data may not leave its home region."""

from __future__ import annotations

from tenancy.errors import WrongRegion


class ResidencyViolation(WrongRegion):
    """Reading or writing a tenant's data (or using its key) outside its home region.

    A ``WrongRegion``, so the middleware answers it with 403
    ``urn:tenancy:problem:wrong-region``. The attributes are for logs and audit only;
    callers see the generic message.
    """

    code = "wrong-region"

    def __init__(self, reason: str, *, tenant_id: str | None, home_region: str | None,
                 region: str | None, attempted: str) -> None:
        super().__init__("tenant is homed in another region")
        self.reason = reason
        self.tenant_id = tenant_id
        self.home_region = home_region
        self.region = region
        self.attempted = attempted
