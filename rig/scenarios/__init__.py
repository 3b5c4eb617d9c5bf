"""Scenarios: what each case sets through tphctl and what it expects on the wire."""
