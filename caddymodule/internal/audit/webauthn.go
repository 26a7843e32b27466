package audit

// Security keys and passkeys (WebAuthn): added, renamed, removed by their
// user; EvKeySignCount is an assertion refused because the key's signature
// counter did not go up (a cloned key, or a replay). An assertion's outcome
// is a code.ok or code.failed of method "webauthn".
const (
	EvKeyAdded     = "security_key.added"
	EvKeyRenamed   = "security_key.renamed"
	EvKeyRemoved   = "security_key.removed"
	EvKeySignCount = "security_key.sign_count"
)

// StepKeys is the step of adding or removing a security key.
const StepKeys = "security_keys"
