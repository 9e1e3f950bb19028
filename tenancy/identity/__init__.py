"""Verifying who is calling: JWT access tokens from trusted issuers (PyJWT)."""

from tenancy.identity.cache import VerifiedTokenCache
from tenancy.identity.dev import DEV_ISSUER, DevIssuer
from tenancy.identity.keys import ASYMMETRIC_ALGORITHMS, JWKSKeySource
from tenancy.identity.verifier import (
    ACCESS_TOKEN_TYPES,
    REQUIRED_CLAIMS,
    Issuer,
    TokenVerifier,
    VerifiedToken,
    trusted_issuer,
)

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "ASYMMETRIC_ALGORITHMS",
    "DEV_ISSUER",
    "REQUIRED_CLAIMS",
    "DevIssuer",
    "Issuer",
    "JWKSKeySource",
    "TokenVerifier",
    "VerifiedToken",
    "VerifiedTokenCache",
    "trusted_issuer",
]
