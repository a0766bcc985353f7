# Scopes under admin.* need the user's consent and a fresh multi-factor authentication, and live 15 minutes;
# other scopes are allowed. Machine clients never get admin scopes.
package consent_ledger

import rego.v1

default decision := {"verdict": "allow"}

decision := {"verdict": "deny", "reason": "machine clients may not hold admin scopes"} if {
	startswith(input.scope.scope, "admin.")
	input.context.client.audience == "machine"
}

decision := {"verdict": "conditional", "conditions": {
	"consent": true,
	"ttl_seconds": 900,
	"step_up": {"acr": "mfa", "max_age_seconds": 300},
}} if {
	startswith(input.scope.scope, "admin.")
	input.context.client.audience == "human"
}
