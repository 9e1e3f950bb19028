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

_post := {"action": {"method": "POST", "route": "/worklogs"}}

_export := object.union(
	_with_principal({"roles": ["admin"], "scopes": ["worklogs:export"], "mfa": true}),
	{"action": {"method": "GET", "route": "/worklogs/export"}},
)

_support := {
	"now": 1795000000,
	"service": "worklogs",
	"action": {"method": "GET", "route": "/worklogs"},
	"tenant": {"id": "t-acme", "status": "active"},
	"resource": {"tenant_id": "t-acme"},
	"principal": {
		"tenant_id": "t-staff", "subject": "sam", "kind": "support", "mfa": true,
		"device_trusted": true, "roles": [], "scopes": ["worklogs:read"],
		"support_grant_id": "g-1",
	},
	"support_grant": {
		"id": "g-1", "tenant_id": "t-acme", "scopes": ["worklogs:read"],
		"expires_at": 1795003600, "active": true,
	},
}

_with_support(changes) := object.union(_support, {"principal": object.union(_support.principal, changes)})

# object.union merges objects; replacing one drops the keys the new value lacks.
_replace(doc, key, value) := object.union(object.remove(doc, [key]), {key: value})

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

# Per-role override: the roles a tenant names get its scopes, the others keep the defaults.
test_tenant_role_override_replaces_only_that_role if {
	roles := {"t-acme": {"viewer": ["worklogs:read", "worklogs:write"]}}
	viewer_writes := object.union(_with_principal({"roles": ["viewer"]}), _post)
	authz.decision.allow with input as viewer_writes with data.tenancy.tenant_roles as roles
	member_writes := object.union(_member, _post)
	authz.decision.allow with input as member_writes with data.tenancy.tenant_roles as roles
	d := authz.decision with input as viewer_writes
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
	d := authz.decision with input as object.union(_support, {"support_grant": null})
	d.reasons == {"scope_not_granted", "support_requires_grant"}
}

test_support_under_the_named_active_grant_is_allowed if {
	d := authz.decision with input as _support
	d.allow
	d.valid_until == _support.support_grant.expires_at
}

# The token's scopes and the grant's, both: a read-only token never writes under a write grant.
test_support_scopes_are_the_tokens_and_the_grants if {
	write_grant := object.union(_support, {"support_grant": {"scopes": ["worklogs:read", "worklogs:write"]}})
	d := authz.decision with input as object.union(write_grant, _post)
	d.reasons == {"scope_not_granted"}
	read_grant := object.union(_with_support({"scopes": ["worklogs:read", "worklogs:write"]}), _post)
	e := authz.decision with input as read_grant
	e.reasons == {"scope_not_granted"}
}

test_support_must_name_the_grant if {
	d := authz.decision with input as _with_support({"support_grant_id": "g-2"})
	d.reasons == {"scope_not_granted", "support_requires_grant"}
	e := authz.decision with input as _with_support({"support_grant_id": null})
	e.reasons == {"scope_not_granted", "support_requires_grant"}
}

test_support_grant_expires_at_its_instant if {
	d := authz.decision with input as object.union(_support, {"now": _support.support_grant.expires_at})
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

test_missing_input_is_invalid if {
	d := authz.decision with input as {}
	not d.allow
	d.reasons == {"invalid-input"}
	d.scopes == []
	d.valid_until == null
}

# Missing or mistyped facts, and input that is no object at all. Before facts were
# required positively, several were allowed (mfa "false" or null, no tenant status, no
# resource tenant, scopes as an object, device_trusted 0, an unknown kind on /whoami).
_malformed := [
	object.union(_export, {"principal": {"mfa": "false"}}),
	object.union(_export, {"principal": {"mfa": null}}),
	object.union(_export, {"principal": {"mfa": 1}}),
	object.union(_member, {"tenant": {"status": null}}),
	object.remove(_member, ["tenant"]),
	_replace(_member, "tenant", {"id": "t-acme"}),
	_replace(_member, "resource", {}),
	object.union(_member, {"resource": {"tenant_id": null}}),
	object.remove(_member, ["resource"]),
	_with_principal({"scopes": {"a": "worklogs:read"}}),
	_with_principal({"scopes": "worklogs:read"}),
	_with_principal({"roles": {"a": "member"}}),
	_with_principal({"roles": ["member", 1]}),
	_with_principal({"kind": "robot"}),
	_with_principal({"subject": ""}),
	_with_principal({"tenant_id": 7}),
	object.union(_member, {"now": "1795000000"}),
	object.union(_member, {"now": -1}),
	object.union(_member, {"now": 9007199254740992}),
	object.remove(_member, ["now"]),
	object.union(_member, {"service": ["worklogs"]}),
	_with_action({"route": "/worklogs"}),
	_with_action({"method": "GET", "route": ["/worklogs"]}),
	_with_action({"name": "worklogs.delete", "method": "DELETE"}),
	_with_action({}),
	_with_support({"device_trusted": 0}),
	_with_support({"device_trusted": "true"}),
	_replace(_support, "principal", object.remove(_support.principal, ["device_trusted"])),
	_replace(_support, "principal", object.remove(_support.principal, ["support_grant_id"])),
	object.remove(_support, ["support_grant"]),
	object.union(_support, {"support_grant": {"active": "true"}}),
	object.union(_support, {"support_grant": {"expires_at": "1795003600"}}),
	object.union(_support, {"support_grant": {"scopes": {"a": "worklogs:read"}}}),
	object.union(_support, {"support_grant": {"id": 1}}),
	object.union(_support, {"support_grant": []}),
	"not an object",
	[_member],
	null,
]

test_malformed_facts_are_invalid_input if {
	every doc in _malformed {
		d := authz.decision with input as doc
		not d.allow
		d.reasons == {"invalid-input"}
	}
}
