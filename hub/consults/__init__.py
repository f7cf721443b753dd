"""Live video consults: the record (`store`), ICE servers and TURN credentials (`ice`), and the signaling relay
between the kiosk's socket and the provider's browser (`relay`). Media never passes through the hub."""
