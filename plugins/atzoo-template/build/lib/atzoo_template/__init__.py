"""A minimal atzoo plugin: copy this package to start your own (see README.md)."""

__version__ = "0.1.0"
