"""The `atzoo` command line."""
