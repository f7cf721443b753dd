"""Device Information Service characteristics (0x2A23-0x2A2A, 0x2A50).

Layouts (Device Information Service 1.1 and the GATT Specification Supplement):
  strings: UTF-8, no length prefix, no terminator (some firmware pads with NULs)
  System ID: uint40 manufacturer identifier, then uint24 OUI, least significant octet first
  Regulatory Certification Data List: an opaque IEEE 11073-20601 structure
  PnP ID: vendor id source u8 (1 Bluetooth SIG, 2 USB-IF), vendor id u16, product id u16, product version u16
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders import REGISTRY
from device.ble.decoders.device_information import (
    DeviceString,
    PnpId,
    RegulatoryCertificationDataList,
    SystemId,
    VendorIdSource,
    decode_firmware_revision,
    decode_hardware_revision,
    decode_manufacturer_name,
    decode_model_number,
    decode_pnp_id,
    decode_regulatory_certification_data_list,
    decode_serial_number,
    decode_software_revision,
    decode_system_id,
)
from device.ble.errors import DecodeError

Decoder = Callable[[bytes], object]

STRING_DECODERS: dict[int, Decoder] = {
    0x2A29: decode_manufacturer_name,
    0x2A24: decode_model_number,
    0x2A25: decode_serial_number,
    0x2A27: decode_hardware_revision,
    0x2A26: decode_firmware_revision,
    0x2A28: decode_software_revision,
}


@pytest.mark.parametrize("decode", STRING_DECODERS.values())
@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"Silicon Labs", "Silicon Labs"),
        (b"", ""),
        (b"UA-651BLE\x00\x00\x00", "UA-651BLE"),  # NUL padding to a fixed length is dropped
        (b"A\x00B", "A\x00B"),  # only trailing NULs are padding
        ("Müller Medizintechnik".encode(), "Müller Medizintechnik"),  # C3 BC is ü
        ("血圧計".encode(), "血圧計"),
    ],
)
def test_strings(decode: Decoder, data: bytes, text: str) -> None:
    assert decode(data) == DeviceString(text)


@pytest.mark.parametrize(("uuid", "decode"), STRING_DECODERS.items())
def test_invalid_utf8_is_refused_naming_the_characteristic(uuid: int, decode: Decoder) -> None:
    name = REGISTRY[uuid].name
    with pytest.raises(DecodeError, match=f"{name}: not valid UTF-8 at offset 2"):
        decode(b"AB\xff\xfeCD")


def test_truncated_multibyte_sequence_is_refused() -> None:
    with pytest.raises(DecodeError, match="Model Number String"):
        decode_model_number(b"M\xc3")  # the first octet of a two-octet sequence, then nothing


def test_system_id_from_the_spec_example() -> None:
    # org.bluetooth.characteristic.system_id (GATT XML, DIS): OUI 0x123456 and company-assigned 0x9ABCDE
    # give System ID 0x123456FFFE9ABCDE, sent least significant octet first.
    system_id = decode_system_id(bytes.fromhex("DEBC9AFEFF563412"))
    assert system_id == SystemId(manufacturer_id=0xFFFE9ABCDE, oui=0x123456)
    assert system_id.eui64 == 0x123456FFFE9ABCDE


def test_system_id_short_and_too_long() -> None:
    with pytest.raises(DecodeError, match="organizationally unique identifier"):
        decode_system_id(bytes.fromhex("DEBC9AFEFF5634"))
    with pytest.raises(DecodeError, match="manufacturer identifier"):
        decode_system_id(bytes.fromhex("DEBC"))
    with pytest.raises(DecodeError, match=r"System ID: expected 8 byte\(s\), got 9"):
        decode_system_id(bytes(9))


@pytest.mark.parametrize(
    ("data", "hex_text"),
    [(b"", ""), (bytes.fromhex("FE00000100020001"), "fe00000100020001")],
)
def test_regulatory_certification_data_list_is_kept_as_hex(data: bytes, hex_text: str) -> None:
    assert decode_regulatory_certification_data_list(data) == RegulatoryCertificationDataList(hex_text)


# --- PnP ID, vectors from eisaev/blevalueparser, tests/pnpidtest.cpp.


@pytest.mark.parametrize(
    ("source_octet", "source"),
    [(0x01, VendorIdSource.BLUETOOTH_SIG), (0x02, VendorIdSource.USB_IF), (0x2A, None), (0x00, None)],
)
def test_pnp_id(source_octet: int, source: VendorIdSource | None) -> None:
    # source | 12 00 = vendor 0x0012 | 23 01 = product 0x0123 | BC AA = version 0xAABC = 170.11.12
    pnp = decode_pnp_id(bytes([source_octet]) + bytes.fromhex("12002301BCAA"))
    assert pnp == PnpId(source_octet, 0x0012, 0x0123, 0xAABC)
    assert pnp.source is source
    assert pnp.version == (170, 11, 12)


def test_pnp_id_short_and_too_long() -> None:
    with pytest.raises(DecodeError, match="product version"):
        decode_pnp_id(bytes([1, 2, 3, 4, 5, 6]))  # eisaev TooShort
    with pytest.raises(DecodeError, match=r"PnP ID: expected 7 byte\(s\), got 8"):
        decode_pnp_id(bytes([1, 2, 3, 4, 5, 6, 7, 8]))  # eisaev TooLong: refused, as eisaev does


def test_all_characteristics_are_registered() -> None:
    expected = {
        0x2A23: decode_system_id,
        0x2A2A: decode_regulatory_certification_data_list,
        0x2A50: decode_pnp_id,
        **STRING_DECODERS,
    }
    for uuid, decode in expected.items():
        assert REGISTRY[uuid].decode is decode
        assert REGISTRY[uuid].readings(decode(b"\x00" * (7 if uuid == 0x2A50 else 8))) == []


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else.

ALL_DECODERS: list[Decoder] = [
    *STRING_DECODERS.values(),
    decode_system_id,
    decode_regulatory_certification_data_list,
    decode_pnp_id,
]


@pytest.mark.parametrize("decode", ALL_DECODERS)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes(decode: Decoder, data: bytes) -> None:
    try:
        decoded = decode(data)
    except DecodeError:
        return
    assert isinstance(decoded, DeviceString | SystemId | RegulatoryCertificationDataList | PnpId)
