"""The isolation evidence pack: every proof of isolation gathered into one judged JSON.

Inputs: the HTTP probe matrix (``tenancy probe --out``), the database access matrix with
the RLS auditor's findings (``tenancy db matrix --json``), each audit chain's
verification, and the shipped policies' test results. :func:`build_evidence` judges them:

- ``PASS`` only if the probe is not void and leaked nothing, the database matrix has no
  leaked or error cell and no finding, every audit chain verifies and every policy test
  passed;
- ``FAIL`` if any of those is false, with every reason listed;
- ``INCOMPLETE`` if nothing failed but an input is missing or a test could not run:
  missing evidence is never a pass.

The HTML report (:func:`tenancy.testing.report.render_html`) is rendered from the JSON
document alone, so the JSON is exactly what the report shows.

One module per kind of evidence, so each input's shape and checks are read on their own:
:mod:`.inputs` (the probe's and the database matrix's documents), :mod:`.chains` (audit
chain verification), :mod:`.versions` (what was tested), and :mod:`.pack` (the judged
document and the files it is written to).
"""

from tenancy.errors import EvidenceInputError
from tenancy.testing.evidence.chains import ChainResult, ChainVerifier, verify_chains
from tenancy.testing.evidence.inputs import load_input, outcome_counts, validate_input
from tenancy.testing.evidence.pack import KIND, VERSION, Verdict, build_evidence, judge, write_pack
from tenancy.testing.evidence.versions import LIBRARIES, bundle_digest, collect_versions
from tenancy.testing.outcomes import DB_MATRIX_KIND, DB_OUTCOMES, PROBE_KIND, PROBE_OUTCOMES

__all__ = [
    "DB_MATRIX_KIND",
    "DB_OUTCOMES",
    "KIND",
    "LIBRARIES",
    "PROBE_KIND",
    "PROBE_OUTCOMES",
    "VERSION",
    "ChainResult",
    "ChainVerifier",
    "EvidenceInputError",
    "Verdict",
    "build_evidence",
    "bundle_digest",
    "collect_versions",
    "judge",
    "load_input",
    "outcome_counts",
    "validate_input",
    "verify_chains",
    "write_pack",
]
