"""The kiosk fleet: identities (CA, certificates, broker passwords), the broker's security files."""
