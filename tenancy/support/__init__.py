"""Time-boxed, consented support access: the tenant's admin decides, the grant expires."""

from tenancy.support.breakglass import BreakGlass
from tenancy.support.model import TICKET_GRACE, Grant, GrantState
from tenancy.support.notify import LoggingNotifier, MemoryNotifier, Notice, Notifier, OutboxNotifier
from tenancy.support.service import ADMIN_ROLE, SupportAccess, is_write_scope
from tenancy.support.tickets import TicketEvent, webhook_app

__all__ = [
    "ADMIN_ROLE",
    "TICKET_GRACE",
    "BreakGlass",
    "Grant",
    "GrantState",
    "LoggingNotifier",
    "MemoryNotifier",
    "Notice",
    "Notifier",
    "OutboxNotifier",
    "SupportAccess",
    "TicketEvent",
    "is_write_scope",
    "webhook_app",
]
