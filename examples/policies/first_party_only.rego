# Allow a scope to first-party clients only; third parties are refused with a reason auditors can read.
package consent_ledger

import rego.v1

default decision := {"verdict": "deny", "reason": "only first-party clients may hold this scope"}

decision := {"verdict": "allow"} if input.context.client.kind == "first_party"
