package v1alpha1

// Condition types set on berth's resources by config.Build's consumers.
const (
	// ConditionAccepted is True when the object is part of the configuration in use. It is
	// False when the object is invalid, or conflicts with an older object and was left out.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs is True when every pool and peer an advertisement names exists.
	// An advertisement with dangling references still applies to what it can resolve.
	ConditionResolvedRefs = "ResolvedRefs"
)
