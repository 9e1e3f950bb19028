# METADATA
# title: tenancy request authorization
# description: |
#   Least privilege for every request and every finer action. A decision allows only
#   when the action is declared, the principal's effective scopes cover every scope it
#   needs, MFA is present for sensitive scopes, and the resource belongs to the
#   principal's tenant. Time arrives as input.now (seconds since the epoch); no rule
#   reads the clock, and only built-ins every supported engine implements are used.
package tenancy.authz

# METADATA
# title: decision
# description: The one entry point. Undefined or malformed means deny to the caller.
# entrypoint: true
decision := {
	"allow": allow,
	"reasons": reasons,
	"scopes": _required,
	"valid_until": _valid_until,
}

default allow := false

allow if {
	_declared
	count(reasons) == 0
}

# -- what the action needs ------------------------------------------------------------

_route_key := concat(" ", [input.action.method, input.action.route])

_action := data.tenancy.routes[input.service][_route_key] if input.action.route

_action := data.tenancy.actions[input.action.name] if {
	input.action.name
	not input.action.route
}

_declared if _action

default _required := []

_required := _action.scopes

# -- what the principal holds ---------------------------------------------------------

# Roles from the tenant's bindings when the tenant manages them in policy data (a removed
# binding takes effect on the next decision); otherwise from the verified token.
_roles := object.get(data.tenancy.role_bindings[input.tenant.id], input.principal.subject, []) if {
	data.tenancy.role_bindings[input.tenant.id]
}

_roles := input.principal.roles if not data.tenancy.role_bindings[input.tenant.id]

_role_map := object.get(data.tenancy.tenant_roles, input.tenant.id, data.tenancy.default_roles)

_role_scopes contains scope if {
	some role in _roles
	some scope in object.get(_role_map, role, [])
}

# People get what their token carries and their roles grant, both.
effective_scopes contains scope if {
	input.principal.kind == "user"
	some scope in input.principal.scopes
	scope in _role_scopes
}

# Services get what their caller attenuated to, within what the service may ever hold.
effective_scopes contains scope if {
	input.principal.kind == "service"
	some scope in input.principal.scopes
	scope in object.get(data.tenancy.service_scopes, input.principal.subject, [])
}

# Support staff get what the tenant's admin consented to in the grant, nothing else.
effective_scopes contains scope if {
	input.principal.kind == "support"
	_grant_active
	some scope in input.support_grant.scopes
}

_grant_active if {
	input.support_grant.active == true
	input.now < input.support_grant.expires_at
	input.support_grant.tenant_id == input.tenant.id
}

# -- why not --------------------------------------------------------------------------

reasons contains "action_not_declared" if not _declared

reasons contains "ambiguous_action" if {
	input.action.route
	input.action.name
}

reasons contains "scope_not_granted" if {
	some scope in _required
	not scope in effective_scopes
}

reasons contains "mfa_required" if {
	some scope in _required
	scope in data.tenancy.sensitive_scopes
	not input.principal.mfa
}

# A person or service of the tenant acts on the tenant's own resources.
reasons contains "tenant_mismatch" if {
	input.principal.kind != "support"
	input.principal.tenant_id != input.resource.tenant_id
}

# Support staff act on the resources of the tenant that granted them access, only.
reasons contains "tenant_mismatch" if {
	input.principal.kind == "support"
	input.resource.tenant_id != input.tenant.id
}

reasons contains "tenant_not_active" if input.tenant.status != "active"

# Support staff act only under an active, consented grant, with MFA, from a trusted device.
reasons contains "support_requires_grant" if {
	input.principal.kind == "support"
	not _grant_active
}

reasons contains "mfa_required" if {
	input.principal.kind == "support"
	not input.principal.mfa
}

reasons contains "untrusted_device" if {
	input.principal.kind == "support"
	not input.principal.device_trusted
}

# -- how long the answer holds --------------------------------------------------------

default _valid_until := null

# A decision under a grant holds no longer than the grant.
_valid_until := input.support_grant.expires_at if input.principal.kind == "support"
