package tenancy.authz_test

import data.tenancy.authz

_member := {
	"now": 1795000000,
	"service": "worklogs",
	"action": {"method": "GET", "route": "/worklogs"},
	"tenant": {"id": "t-acme", "status": "active"},
	"resource": {"tenant_id": "t-acme"},
	"principal": {
		"tenant_id": "t-acme", "subject": "alice", "kind": "user", "mfa": false,
		"roles": ["member"], "scopes": ["worklogs:read", "worklogs:write"],
	},
}

_with_action(action) := object.union(object.remove(_member, ["action"]), {"action": action})

_with_route(method, route) := _with_action({"method": method, "route": route})

_with_principal(changes) := object.union(_member, {"principal": object.union(_member.principal, changes)})

test_declared_route_with_granted_scope_is_allowed if {
	authz.decision.allow with input as _member
}

test_undeclared_route_is_denied if {
	d := authz.decision with input as _with_route("GET", "/admin")
	not d.allow
	"action_not_declared" in d.reasons
}

test_undeclared_method_is_denied if {
	not authz.decision.allow with input as _with_route("PUT", "/worklogs")
}

test_scope_missing_from_token_is_denied if {
	d := authz.decision with input as _with_principal({"scopes": ["worklogs:write"]})
	not d.allow
	d.reasons == {"scope_not_granted"}
}

test_scope_in_token_but_not_granted_by_roles_is_denied if {
	d := authz.decision with input as _with_principal({"roles": ["guest"]})
	d.reasons == {"scope_not_granted"}
}

test_tenant_role_map_overrides_the_default if {
	roles := {"t-acme": {"member": []}}
	d := authz.decision with input as _member with data.tenancy.tenant_roles as roles
	d.reasons == {"scope_not_granted"}
}

test_role_bindings_are_authoritative_for_their_tenant if {
	bound := {"t-acme": {"alice": ["viewer"]}}
	authz.decision.allow with input as _member with data.tenancy.role_bindings as bound
	unbound := {"t-acme": {"bob": ["member"]}}
	d := authz.decision with input as _member with data.tenancy.role_bindings as unbound
	d.reasons == {"scope_not_granted"}
}

test_sensitive_scope_needs_mfa if {
	admin := object.union(
		_with_principal({"roles": ["admin"], "scopes": ["worklogs:export"]}),
		{"action": {"method": "GET", "route": "/worklogs/export"}},
	)
	d := authz.decision with input as admin
	d.reasons == {"mfa_required"}
	with_mfa := object.union(admin, {"principal": object.union(admin.principal, {"mfa": true})})
	authz.decision.allow with input as with_mfa
}

test_other_tenants_resource_is_denied if {
	other := object.union(_member, {"resource": {"tenant_id": "t-globex"}})
	d := authz.decision with input as other
	d.reasons == {"tenant_mismatch"}
}

test_inactive_tenant_is_denied if {
	suspended := object.union(_member, {"tenant": {"id": "t-acme", "status": "suspended"}})
	d := authz.decision with input as suspended
	d.reasons == {"tenant_not_active"}
}

test_support_without_grant_is_denied if {
	d := authz.decision with input as _with_principal({"kind": "support"})
	"support_requires_grant" in d.reasons
}

test_service_gets_only_what_it_may_hold if {
	service := _with_principal({"kind": "service", "subject": "reports", "roles": []})
	d := authz.decision with input as service
	d.reasons == {"scope_not_granted"}
	ceiling := {"reports": ["worklogs:read"]}
	authz.decision.allow with input as service with data.tenancy.service_scopes as ceiling
}

test_service_gets_no_more_than_its_caller_attenuated_to if {
	service := _with_principal({"kind": "service", "subject": "reports", "roles": [], "scopes": []})
	ceiling := {"reports": ["worklogs:read"]}
	d := authz.decision with input as service with data.tenancy.service_scopes as ceiling
	d.reasons == {"scope_not_granted"}
}

test_named_action_is_decided_like_a_route if {
	authz.decision.allow with input as _with_action({"name": "worklogs.delete"})
	not authz.decision.allow with input as _with_action({"name": "worklogs.purge"})
}

test_route_and_name_together_is_denied if {
	both := _with_action({"method": "GET", "route": "/worklogs", "name": "worklogs.delete"})
	d := authz.decision with input as both
	not d.allow
	"ambiguous_action" in d.reasons
}

test_missing_input_is_denied if {
	not authz.decision.allow with input as {}
}
