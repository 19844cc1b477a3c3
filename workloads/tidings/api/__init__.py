"""The HTTP API (FastAPI): accounts, devices, friends, groups, history, search."""

from tidings.api.app import create_app

__all__ = ["create_app"]
