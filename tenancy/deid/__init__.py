"""De-identification: a tenant's records become contributed data only with its consent.

- :mod:`tenancy.deid.policy`: ``ContributionPolicy`` (``allows(tenant_id)``), in memory
  or in the ``tenancy_contribution_settings`` table; unknown tenants are refused;
- :mod:`tenancy.deid.schema`: ``RecordSchema``, which fields are direct identifiers
  (pseudonymised or dropped), free text (scrubbed) or kept;
- :mod:`tenancy.deid.scrub`: the free-text ``Scrubber`` (patterns plus known names, no
  model; see its docstring for why and for its limits);
- :mod:`tenancy.deid.pipeline`: ``Deidentifier``, audited as ``deid.contributed`` /
  ``deid.refused``.
"""

from tenancy.deid.pipeline import PSEUDONYM_PREFIX, Deidentifier, KeySource, pseudonym
from tenancy.deid.policy import (
    SETTINGS_TABLE,
    ContributionPolicy,
    ContributionSetting,
    MemoryContributionPolicy,
    SqlContributionPolicy,
    contribution_settings,
)
from tenancy.deid.schema import IdentifierKind, RecordSchema
from tenancy.deid.scrub import Person, Scrubber
from tenancy.errors import (
    ContributionRefused,
    DeidError,
    DeidSchemaError,
    InvalidSchema,
    RecordRejected,
)

__all__ = [
    "PSEUDONYM_PREFIX",
    "SETTINGS_TABLE",
    "ContributionPolicy",
    "ContributionRefused",
    "ContributionSetting",
    "DeidError",
    "DeidSchemaError",
    "Deidentifier",
    "IdentifierKind",
    "InvalidSchema",
    "KeySource",
    "MemoryContributionPolicy",
    "Person",
    "RecordRejected",
    "RecordSchema",
    "Scrubber",
    "SqlContributionPolicy",
    "contribution_settings",
    "pseudonym",
]
