"""Demonstrates services built on the public API of ``tenancy``: an edge, a worklogs
backend, a tenant admin console, and the demo that runs them (``tenancy demo``)."""
