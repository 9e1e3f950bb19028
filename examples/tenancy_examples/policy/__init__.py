"""The example's policy data: its routes, actions, roles and sensitive scopes.

The library ships the policy and empty tables; this file is what an application writes
to declare itself, laid over the shipped data (``PolicyBundle.from_directory(data=...)``).
"""

from __future__ import annotations

from pathlib import Path

from tenancy.authz import PolicyBundle

DATA = Path(__file__).resolve().with_name("worklogs.json")


def bundle() -> PolicyBundle:
    """The shipped policies with the example's data laid over them."""
    return PolicyBundle.from_directory(data=[DATA])
