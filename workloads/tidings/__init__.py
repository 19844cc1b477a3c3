"""Tidings: WhatsApp-style chat that runs on Kubernetes."""

__all__ = ["__version__"]

__version__ = "0.1.0"
