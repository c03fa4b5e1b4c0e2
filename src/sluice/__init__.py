"""sluice: an SLS-compatible log hub, a fast consumer-group library, and the pipelines built on them."""

__version__ = "0.1.0"

__all__ = ["__version__"]
