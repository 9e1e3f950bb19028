"""Carrying the tenant context from service to service without trusting the caller.

The edge verifies the user; every call downstream carries a context token that the
calling service signs for one audience, one minute and only the scopes the call needs.
"""

from tenancy.propagation.keyring import ServiceKeyring, SigningKey
from tenancy.propagation.messages import CONTEXT_HEADER, MessageConsumer, inject
from tenancy.propagation.outbound import ContextAuth, context_headers
from tenancy.propagation.replay import MemoryReplayGuard, ReplayGuard
from tenancy.propagation.replay_redis import RedisReplayGuard
from tenancy.propagation.replay_table import TableReplayGuard
from tenancy.propagation.tokens import CONTEXT_TOKEN_TYPE, ContextTokenMinter
from tenancy.propagation.verify import (
    ContextTokenVerifier,
    TrustedService,
    VerifiedContext,
    trusted_service,
)

__all__ = [
    "CONTEXT_HEADER",
    "CONTEXT_TOKEN_TYPE",
    "ContextAuth",
    "ContextTokenMinter",
    "ContextTokenVerifier",
    "MemoryReplayGuard",
    "MessageConsumer",
    "RedisReplayGuard",
    "ReplayGuard",
    "ServiceKeyring",
    "SigningKey",
    "TableReplayGuard",
    "TrustedService",
    "VerifiedContext",
    "context_headers",
    "inject",
    "trusted_service",
]
