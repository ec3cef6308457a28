"""The package version, in a module of its own so that anything can read it without importing
the package (setup.cfg reads it statically; checkpoint.py writes it into files)."""

__version__ = "0.1.0"
