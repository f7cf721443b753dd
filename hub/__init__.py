"""The hub: ingests what kiosks send, stores it, and serves it to providers."""

__version__ = "0.1.0"
