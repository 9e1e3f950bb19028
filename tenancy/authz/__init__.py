"""Least privilege decided by policy: Rego evaluated embedded or by an OPA server.

Every request is allowed only if ``data.tenancy.authz.decision`` says so, on facts the
framework gathered from verified credentials; anything else (deny, error, timeout,
undefined) refuses.
"""

from tenancy.authz.authorizer import Authorizer, authorize, bind_authorizer, unbind_authorizer
from tenancy.authz.bundle import PolicyBundle, default_policy_dir
from tenancy.authz.cache import DecisionCache
from tenancy.authz.decision import (
    Action,
    Decision,
    GrantFacts,
    Resource,
    build_input,
    decision_from,
)
from tenancy.authz.embedded import EmbeddedRego
from tenancy.authz.log import (
    DecisionLogSink,
    DecisionRecord,
    JsonLinesDecisionLog,
    MemoryDecisionLog,
    mask,
)
from tenancy.authz.opa import OPAServer
from tenancy.authz.pdp import PolicyDecisionPoint
from tenancy.authz.roles import RoleBindings, RoleBindingsRefresher

__all__ = [
    "Action",
    "Authorizer",
    "Decision",
    "DecisionCache",
    "DecisionLogSink",
    "DecisionRecord",
    "EmbeddedRego",
    "GrantFacts",
    "JsonLinesDecisionLog",
    "MemoryDecisionLog",
    "OPAServer",
    "PolicyBundle",
    "PolicyDecisionPoint",
    "Resource",
    "RoleBindings",
    "RoleBindingsRefresher",
    "authorize",
    "bind_authorizer",
    "build_input",
    "decision_from",
    "default_policy_dir",
    "mask",
    "unbind_authorizer",
]
