"""Demonstrates a FastAPI service on tenancy: async sessions, an encrypted field, policy.

``app.create_app`` builds it from its parts (tests build it so); ``main`` wires it from a
deployment's settings for ``uvicorn``. Storage goes through ``AsyncTenantSession`` only.
"""
