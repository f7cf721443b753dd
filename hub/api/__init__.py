"""The hub's HTTP API (FastAPI): kiosks, observations, dead letters, health."""

from hub.api.app import EXEMPT_PATHS, create_app

__all__ = ["EXEMPT_PATHS", "create_app"]
