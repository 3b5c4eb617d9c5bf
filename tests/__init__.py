"""tphlab tests."""
