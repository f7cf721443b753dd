"""Device Information Service (DIS 1.1, 0x180A): who made the measuring device, and which one it is.

These identify the device on every Observation (manufacturer, model, serial, firmware), so a
string that is not valid UTF-8 is refused rather than guessed at. Some firmware pads strings
with NULs to a fixed length; those are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, at_most_attribute_size, check, finish
from device.ble.errors import DecodeError
from device.ble.reader import Reader

SYSTEM_ID = 0x2A23
MODEL_NUMBER = 0x2A24
SERIAL_NUMBER = 0x2A25
FIRMWARE_REVISION = 0x2A26
HARDWARE_REVISION = 0x2A27
SOFTWARE_REVISION = 0x2A28
MANUFACTURER_NAME = 0x2A29
REGULATORY_CERTIFICATION_DATA_LIST = 0x2A2A
PNP_ID = 0x2A50

SYSTEM_ID_LAYOUT: Layout = (Field("manufacturer identifier", 5), Field("organizationally unique identifier", 3))
PNP_ID_LAYOUT: Layout = (
    Field("vendor id source", 1),
    Field("vendor id", 2),
    Field("product id", 2),
    Field("product version", 2),
)


@dataclass(frozen=True)
class DeviceString:
    value: str


def string_decoder(what: str) -> Callable[[bytes], DeviceString]:
    """One decoder per string characteristic, so an error names the characteristic it came from."""

    def decode(data: bytes) -> DeviceString:
        at_most_attribute_size(data, what)  # DIS 1.1 gives utf8s strings no fixed length
        raw = bytes(data).rstrip(b"\x00")
        try:
            return DeviceString(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what}: not valid UTF-8 at offset {exc.start}: {raw[exc.start : exc.end]!r}") from None

    decode.__name__ = decode.__qualname__ = f"decode_{what.lower().replace(' ', '_')}"
    return decode


decode_manufacturer_name = string_decoder("Manufacturer Name String")
decode_model_number = string_decoder("Model Number String")
decode_serial_number = string_decoder("Serial Number String")
decode_hardware_revision = string_decoder("Hardware Revision String")
decode_firmware_revision = string_decoder("Firmware Revision String")
decode_software_revision = string_decoder("Software Revision String")


@dataclass(frozen=True)
class SystemId:
    """DIS 1.1 layout: a 40-bit manufacturer-defined identifier, then the 24-bit OUI (little-endian)."""

    manufacturer_id: int
    oui: int

    @property
    def eui64(self) -> int:
        """The same 64 bits as one EUI-64 number, OUI first, as the IEEE writes it."""
        return (self.oui << 40) | self.manufacturer_id


def decode_system_id(data: bytes) -> SystemId:
    check(data, "System ID", SYSTEM_ID_LAYOUT)
    reader = Reader(data, "System ID")
    manufacturer_id = reader.uint(5, "manufacturer identifier")
    oui = reader.u24("organizationally unique identifier")
    finish(reader)
    return SystemId(manufacturer_id, oui)


@dataclass(frozen=True)
class RegulatoryCertificationDataList:
    """An IEEE 11073-20601 structure we do not interpret; kept as hex for whoever audits the device."""

    hex: str


def decode_regulatory_certification_data_list(data: bytes) -> RegulatoryCertificationDataList:
    # DIS 1.1 leaves the length to the IEEE 11073-20601 structure, which is kept opaque, never read into.
    at_most_attribute_size(data, "IEEE 11073-20601 Regulatory Certification Data List")
    return RegulatoryCertificationDataList(bytes(data).hex())


class VendorIdSource(IntEnum):
    BLUETOOTH_SIG = 1  # vendor id from the Bluetooth SIG company identifiers
    USB_IF = 2  # vendor id from the USB Implementer's Forum


@dataclass(frozen=True)
class PnpId:
    vendor_id_source: int  # raw; see `source`
    vendor_id: int
    product_id: int
    product_version: int  # 0xJJMN: major JJ, minor M, sub-minor N

    @property
    def source(self) -> VendorIdSource | None:
        """None for the values the spec reserves (0, 3-255)."""
        try:
            return VendorIdSource(self.vendor_id_source)
        except ValueError:
            return None

    @property
    def version(self) -> tuple[int, int, int]:
        return self.product_version >> 8, (self.product_version >> 4) & 0x0F, self.product_version & 0x0F


def decode_pnp_id(data: bytes) -> PnpId:
    check(data, "PnP ID", PNP_ID_LAYOUT)
    reader = Reader(data, "PnP ID")
    pnp_id = PnpId(
        vendor_id_source=reader.u8("vendor id source"),
        vendor_id=reader.u16("vendor id"),
        product_id=reader.u16("product id"),
        product_version=reader.u16("product version"),
    )
    finish(reader)
    return pnp_id


for _uuid, _name, _decode in (
    (MANUFACTURER_NAME, "Manufacturer Name String", decode_manufacturer_name),
    (MODEL_NUMBER, "Model Number String", decode_model_number),
    (SERIAL_NUMBER, "Serial Number String", decode_serial_number),
    (HARDWARE_REVISION, "Hardware Revision String", decode_hardware_revision),
    (FIRMWARE_REVISION, "Firmware Revision String", decode_firmware_revision),
    (SOFTWARE_REVISION, "Software Revision String", decode_software_revision),
):
    register(Characteristic(_uuid, _name, _decode))
register(Characteristic(SYSTEM_ID, "System ID", decode_system_id))
register(
    Characteristic(
        REGULATORY_CERTIFICATION_DATA_LIST,
        "IEEE 11073-20601 Regulatory Certification Data List",
        decode_regulatory_certification_data_list,
    )
)
register(Characteristic(PNP_ID, "PnP ID", decode_pnp_id))
