"""The hub's JSON API for other systems (per-client tokens with scopes); the app itself is `hub.app`."""
