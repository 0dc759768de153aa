"""Fault-injection tests: real processes killed and restarted; the verifier proves nothing lost or doubled."""
