"""The kiosk: store-and-forward vitals to the hub (and, later, the patient's screens and live consults)."""

__version__ = "0.1.0"
