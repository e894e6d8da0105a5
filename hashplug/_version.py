"""hashplug's version: a leaf module, so modules that record it never import the package face."""

__version__ = "0.2.0"
