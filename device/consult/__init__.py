"""Live video consults on the kiosk: the signaling client (outbound WebSocket to the hub), the call (aiortc),
and the media tracks (the shared camera, the microphone)."""
