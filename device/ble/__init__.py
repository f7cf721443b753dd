"""Bluetooth LE health devices: pure decoders of the SIG health services, and (later) the collector."""
