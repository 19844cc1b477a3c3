"""kopf handlers, one module per kind."""

from tidings_operator.handlers import chatcluster

__all__ = ["chatcluster"]
