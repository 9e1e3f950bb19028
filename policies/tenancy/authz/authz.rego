# METADATA
# title: tenancy request authorization
# description: |
#   Least privilege for every request and every finer action. A decision allows only
#   when the input is well formed, the action is declared, the principal's effective
#   scopes cover every scope it needs, MFA is present for sensitive scopes, and the
#   resource belongs to the principal's tenant. Time arrives as input.now (seconds since
#   the epoch); no rule reads the clock, and only built-ins every supported engine
#   implements are used.
#
#   Facts are required positively: every field a decision reads must be present and of
#   its type, or the only reason is "invalid-input". A missing or mistyped field never
#   switches a check off, whoever sends the input (the library's own builder, or any
#   other client of an OPA server that shares this policy).
package tenancy.authz

# METADATA
# title: decision
# description: |
#   The one entry point. Undefined or malformed means deny to the caller. On input
#   that is not well formed, reasons is exactly {"invalid-input"}, scopes is empty and
#   valid_until is null: nothing else is computed from facts that cannot be trusted.
# entrypoint: true
decision := {
	"allow": allow,
	"reasons": reasons,
	"scopes": _required,
	"valid_until": _valid_until,
}

default allow := false

allow if {
	_valid_input
	_declared
	count(reasons) == 0
}

reasons := {"invalid-input"} if not _valid_input

reasons := _denials if _valid_input

# -- what a well-formed input is ------------------------------------------------------

# METADATA
# title: well-formed input
# description: |
#   The facts every decision reads, each present and of its type: now is a time; the
#   service, the tenant's id and status, the resource's tenant id, the principal's
#   tenant id and subject are non-empty strings; the action is a route (method and
#   route strings) or a named action (a name string); the principal's kind is user,
#   service or support, its roles and scopes are arrays of strings, mfa is a boolean.
#   A support principal also needs a boolean device_trusted, a support_grant_id that is
#   a string or null, and a support_grant that is a well-formed grant or null.
_valid_input if {
	_time(input.now)
	_id(input.service)
	_valid_action
	is_object(input.tenant)
	_id(input.tenant.id)
	_id(input.tenant.status)
	is_object(input.resource)
	_id(input.resource.tenant_id)
	_valid_principal
}

_valid_action if {
	is_object(input.action)
	_optional_string(input.action, "method")
	_optional_string(input.action, "route")
	_optional_string(input.action, "name")
	_action_form
}

# A route needs its method; a name stands alone. Both at once is well formed, and
# denied as ambiguous below.
_action_form if {
	input.action.method
	input.action.route
}

_action_form if {
	input.action.name
	not input.action.method
	not input.action.route
}

_valid_principal if {
	is_object(input.principal)
	_id(input.principal.tenant_id)
	_id(input.principal.subject)
	input.principal.kind in {"user", "service", "support"}
	_strings(input.principal.roles)
	_strings(input.principal.scopes)
	is_boolean(input.principal.mfa)
	_valid_support_facts
}

_valid_support_facts if input.principal.kind != "support"

_valid_support_facts if {
	input.principal.kind == "support"
	is_boolean(input.principal.device_trusted)
	_id_or_null(input.principal.support_grant_id)
	_grant_or_null(input.support_grant)
}

_grant_or_null(grant) if grant == null

_grant_or_null(grant) if {
	is_object(grant)
	_id(grant.id)
	_id(grant.tenant_id)
	_strings(grant.scopes)
	_time(grant.expires_at)
	is_boolean(grant.active)
}

_id(value) if {
	is_string(value)
	value != ""
}

_id_or_null(value) if value == null

_id_or_null(value) if _id(value)

_optional_string(doc, key) if is_string(object.get(doc, key, ""))

_strings(values) if {
	is_array(values)
	every value in values {
		is_string(value)
	}
}

# Seconds since the epoch, within the integers a double holds exactly (2^53 - 1): every
# engine then compares times alike, whether they arrive as integers or floats.
_time(value) if {
	is_number(value)
	value >= 0
	value <= 9007199254740991
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

_required := _action.scopes if _valid_input

# -- what the principal holds ---------------------------------------------------------

# Roles from the tenant's bindings when the tenant manages them in policy data (a removed
# binding takes effect on the next decision); otherwise from the verified token.
_roles := object.get(data.tenancy.role_bindings[input.tenant.id], input.principal.subject, []) if {
	data.tenancy.role_bindings[input.tenant.id]
}

_roles := input.principal.roles if not data.tenancy.role_bindings[input.tenant.id]

# METADATA
# title: role map
# description: |
#   Per-role override: a tenant's tenant_roles entry replaces the scopes of the roles it
#   names, and every default role it does not name keeps its default scopes (a tenant
#   redefining viewer still has member and admin). To take a default role away, a
#   tenant maps it to [].
_role_map := object.union(
	data.tenancy.default_roles,
	object.get(data.tenancy.tenant_roles, input.tenant.id, {}),
)

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

# Support staff get what their token carries and the tenant's admin consented to in the
# grant, both: a read-only support token never writes under a write grant.
effective_scopes contains scope if {
	input.principal.kind == "support"
	_grant_active(input.now)
	some scope in input.principal.scopes
	scope in input.support_grant.scopes
}

# The grant the principal names, active at now, for the tenant being acted on.
_grant_active(now) if {
	is_object(input.support_grant)
	input.support_grant.active == true
	now < input.support_grant.expires_at
	input.support_grant.tenant_id == input.tenant.id
	input.principal.support_grant_id == input.support_grant.id
}

_mfa if input.principal.mfa == true

_device_trusted if input.principal.device_trusted == true

# -- why not (read only once the input is well formed) --------------------------------

_denials contains "action_not_declared" if not _declared

_denials contains "ambiguous_action" if {
	input.action.route
	input.action.name
}

_denials contains "scope_not_granted" if {
	some scope in _required
	not scope in effective_scopes
}

_denials contains "mfa_required" if {
	some scope in _required
	scope in data.tenancy.sensitive_scopes
	not _mfa
}

# A person or service of the tenant acts on the tenant's own resources.
_denials contains "tenant_mismatch" if {
	input.principal.kind != "support"
	input.principal.tenant_id != input.resource.tenant_id
}

# Support staff act on the resources of the tenant that granted them access, only.
_denials contains "tenant_mismatch" if {
	input.principal.kind == "support"
	input.resource.tenant_id != input.tenant.id
}

_denials contains "tenant_not_active" if input.tenant.status != "active"

# Support staff act only under an active, consented grant, with MFA, from a trusted device.
_denials contains "support_requires_grant" if {
	input.principal.kind == "support"
	not _grant_active(input.now)
}

_denials contains "mfa_required" if {
	input.principal.kind == "support"
	not _mfa
}

_denials contains "untrusted_device" if {
	input.principal.kind == "support"
	not _device_trusted
}

# -- how long the answer holds --------------------------------------------------------

default _valid_until := null

# A decision under a grant holds no longer than the grant.
_valid_until := input.support_grant.expires_at if {
	_valid_input
	input.principal.kind == "support"
	is_object(input.support_grant)
}
