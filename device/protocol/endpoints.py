"""How both sides name a broker: ``mqtt://host:port`` (plain) or ``mqtts://host:port`` (TLS).

A kiosk may be given several brokers, in order (Mosquitto does not cluster, so a second broker is
the only way to outlive the first): it connects to the first and fails over between them (see
device/forwarder.py). `broker_list` is where every such list is checked, whoever gives it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"broker URL {url!r} has an invalid port") from None
        return cls(parts.hostname, port, tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def broker_list(brokers: BrokerUrl | Iterable[BrokerUrl], *, tls_only: bool = False) -> tuple[BrokerUrl, ...]:
    """One broker or several, in order, as a tuple; a list that cannot work is refused here, not at the first failover.

    Refused: no broker at all; one listed twice (it would get two turns per round, and
    `mqtt://h` and `mqtt://h:1883` are the same one); plain and TLS brokers mixed (the kiosk's one
    MQTT client carries one TLS setting: CA, certificate and key); with `tls_only` (a provisioned
    kiosk), any plain one.
    """
    found = (brokers,) if isinstance(brokers, BrokerUrl) else tuple(brokers)
    if not found:
        raise ValueError("no broker given: a kiosk needs at least one mqtt[s]://host:port")
    for broker in found:
        if not isinstance(broker, BrokerUrl):
            raise ValueError(f"{broker!r} is not a broker URL (mqtt[s]://host:port)")
    seen: set[BrokerUrl] = set()
    for broker in found:
        if broker in seen:
            raise ValueError(f"broker {broker} is listed twice: list each broker once")
        seen.add(broker)
    if tls_only:
        plain = [str(b) for b in found if not b.tls]
        if plain:
            raise ValueError(
                f"broker {', '.join(plain)} is not mqtts://: a provisioned kiosk talks to the hub over TLS only"
            )
    if len({b.tls for b in found}) > 1:
        raise ValueError(
            f"brokers {', '.join(map(str, found))} mix mqtt:// and mqtts://: list brokers of one kind "
            "(a kiosk uses the same TLS settings for every broker)"
        )
    return found


def parse_brokers(urls: str | Iterable[str], *, tls_only: bool = False) -> tuple[BrokerUrl, ...]:
    """`broker_list` of URLs; each error names the URL at fault."""
    return broker_list([BrokerUrl.parse(u) for u in ((urls,) if isinstance(urls, str) else urls)], tls_only=tls_only)


def describe_brokers(brokers: Iterable[BrokerUrl]) -> str:
    """For people: `mqtts://a:8883` or `mqtts://a:8883, then mqtts://b:8883`."""
    return ", then ".join(str(b) for b in brokers)
