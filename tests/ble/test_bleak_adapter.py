"""The bleak adapter: thin, so most of it runs only on a Pi; what runs here is its failure message."""

from __future__ import annotations

import asyncio
import os

import pytest

from device.ble.transport import BleError
from device.ble.transports.bleak import BleakRadio, _short

HAS_BLUEZ = os.path.exists("/run/dbus/system_bus_socket") and os.path.exists("/sys/class/bluetooth")


def test_sig_uuids_shorten_and_vendor_uuids_do_not() -> None:
    assert _short("00002A35-0000-1000-8000-00805F9B34FB") == 0x2A35
    assert _short("6e400001-b5a3-f393-e0a9-e50e24dcca9e") is None


@pytest.mark.skipif(HAS_BLUEZ, reason="this machine has BlueZ: the hardware tests cover it")
def test_scan_without_bluez_says_what_is_missing() -> None:
    """bleak alone fails with a bare FileNotFoundError here; the kiosk must say what is missing."""
    with pytest.raises(BleError, match="BlueZ"):
        asyncio.run(BleakRadio().scan(0.5))


@pytest.mark.hardware
def test_scan_on_a_pi_hears_advertisements() -> None:
    """On a Pi with a powered-on device nearby (any BLE advertiser): the radio reports it."""
    ads = asyncio.run(BleakRadio().scan(5.0))
    assert ads, "no advertisement heard in 5 s: is a device advertising and the adapter up (bluetoothctl show)?"
    assert all(ad.address for ad in ads)
