"""The isolation test kit security teams run against a deployment, and its pytest plugin.

- ``tenancy.testing.probe``: the HTTP probe (``tenancy probe``);
- ``tenancy.testing.dbmatrix``: the database access matrix (``tenancy db matrix``);
- ``tenancy.testing.evidence``: the evidence pack (``tenancy evidence pack``);
- ``tenancy.testing.plugin``: pytest fixtures and ``assert_isolated`` for service suites.
"""
