"""ICE servers for a consult, from the hub's configuration only, with time-limited TURN credentials.

No servers configured means an empty list: host candidates only, which is enough on one LAN. There is
never a public default: aiortc and browsers would otherwise fall back to Google's STUN server, telling a
third party when and from where a clinic's patients are in a call.

TURN uses coturn's REST-API scheme (`use-auth-secret` with `static-auth-secret`): the hub and coturn share
a secret; per consult the hub hands out username "<unix expiry>:<consult id>" and credential
base64(HMAC-SHA1(secret, username)). coturn recomputes the HMAC and refuses the pair after the expiry, so
nothing per consult is stored on the TURN server and a leaked credential dies by itself.
"""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass, field

from device.protocol.signaling import IceServer

STUN_SCHEMES = ("stun:", "stuns:")
TURN_SCHEMES = ("turn:", "turns:")
MAX_URLS = 8  # the contract's limit per ICE server entry
DEFAULT_TURN_TTL_S = 3600


class IceConfigError(ValueError):
    pass


@dataclass(frozen=True)
class IceConfig:
    """`hub serve --ice-server URL ... --turn-url URL ... --turn-secret-file FILE`."""

    stun_urls: tuple[str, ...] = ()  # servers needing no credentials (stun:/stuns:)
    turn_urls: tuple[str, ...] = ()  # one coturn, possibly several transports (turn:/turns:)
    turn_secret: str | None = field(default=None, repr=False)  # coturn's static-auth-secret; never logged
    turn_ttl_s: int = DEFAULT_TURN_TTL_S
    relay_only: bool = False  # media through TURN only (a network that forbids direct paths): Joined.relay_only

    def check(self) -> None:
        for url in self.stun_urls:
            if not url.startswith(STUN_SCHEMES) or len(url) > 200:
                raise IceConfigError(f"--ice-server {url!r}: give a stun: or stuns: URL (TURN goes in --turn-url)")
        for url in self.turn_urls:
            if not url.startswith(TURN_SCHEMES) or len(url) > 200:
                raise IceConfigError(f"--turn-url {url!r}: give a turn: or turns: URL")
        if len(self.stun_urls) > MAX_URLS or len(self.turn_urls) > MAX_URLS:
            raise IceConfigError(f"at most {MAX_URLS} --ice-server and {MAX_URLS} --turn-url")
        if self.turn_urls and not self.turn_secret:
            raise IceConfigError("--turn-url needs --turn-secret-file (coturn's static-auth-secret)")
        if self.turn_secret and not self.turn_urls:
            raise IceConfigError("--turn-secret-file without --turn-url: which TURN server is it for?")
        if self.relay_only and not self.turn_urls:
            raise IceConfigError("--turn-relay-only needs a TURN server (--turn-url)")
        if self.turn_ttl_s <= 0:
            raise IceConfigError("the TURN credential lifetime must be positive")


def read_secret(path: str) -> str:
    """The shared secret from a file (a systemd credential, say): never from the command line."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise IceConfigError(f"--turn-secret-file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise IceConfigError(f"--turn-secret-file {path} is empty")
    return secret


def turn_credential(secret: str, username: str) -> str:
    # HMAC-SHA1 is what coturn's REST-API scheme specifies; it is a MAC here, not a collision-sensitive hash.
    mac = hmac.new(secret.encode(), username.encode(), "sha1").digest()
    return base64.b64encode(mac).decode("ascii")


def turn_clock() -> float:
    """The time TURN expiries count from: the wall clock, which coturn checks them against. Not the app's clock,
    which tests move (a credential stamped with a test's past time would be refused by a real coturn)."""
    return time.time()


def servers(config: IceConfig, consult_id: str, now: float) -> list[IceServer]:
    """The ICE servers for one consult's two peers; TURN credentials valid for `turn_ttl_s` from `now`."""
    out: list[IceServer] = []
    if config.stun_urls:
        out.append(IceServer(urls=list(config.stun_urls)))
    if config.turn_urls and config.turn_secret:
        username = f"{int(now) + config.turn_ttl_s}:{consult_id}"
        out.append(
            IceServer(
                urls=list(config.turn_urls), username=username, credential=turn_credential(config.turn_secret, username)
            )
        )
    return out
