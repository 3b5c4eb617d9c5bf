"""The `rig` command line: one thin module per command group."""
