"""Adapters from real Bluetooth stacks to device.ble.transport: bleak on the kiosk, bumble in tests."""
