"""The Tidings operator: reconciles ChatCluster resources with kopf."""

__all__ = ["__version__"]

__version__ = "0.1.0"
