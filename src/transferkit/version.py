"""transferkit's version, in one place (the package and pyproject.toml read it)."""

__version__ = "0.1.0"
