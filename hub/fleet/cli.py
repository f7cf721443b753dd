"""`hub kiosks add | revoke | identities`: provisioning and cutting off kiosks from the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from device.protocol.endpoints import parse_brokers
from device.protocol.remote_config import KioskSettings
from hub import attribution, audit
from hub.accounts import users
from hub.audit import Actor
from hub.db import Connection, immediate, location
from hub.fleet import remote_config
from hub.fleet.broker_auth import reload_broker
from hub.fleet.identities import FleetPaths, add_kiosk, listing, revoke_kiosk, write_broker_files
from hub.fleet.pki import write_private
from hub.store import HubStore

CLI = Actor("cli", None)
ACTIONS = ("add", "revoke", "identities", "config")


def add_parsers(kiosks: argparse._SubParsersAction[argparse.ArgumentParser], data: object) -> None:
    assert callable(data)
    p = kiosks.add_parser(
        "add",
        help="provision a kiosk: a client certificate from the hub's CA, an MQTT password and a consult "
        "credential, written to one bundle file for `kiosk provision` (a kiosk added again gets new ones)",
    )
    data(p)
    p.add_argument("kiosk_id")
    p.add_argument(
        "--broker-url",
        required=True,
        action="append",
        help="mqtts://host:8883 as the kiosk will reach the broker; repeat it for several, in the order to try them",
    )
    p.add_argument("--hub-url", default=None, help="https://host as the kiosk will reach the hub (live consults)")
    p.add_argument("--clinic", default=None, help="the clinic the kiosk belongs to")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write (owner-only; holds secrets)")
    p = kiosks.add_parser("revoke", help="cut a kiosk off at once: broker password, certificate, consult credential")
    data(p)
    p.add_argument("kiosk_id")
    data(kiosks.add_parser("identities", help="list provisioned kiosks (never their secrets)"))
    p = kiosks.add_parser(
        "config",
        help="change a kiosk's remote settings (a new version, sent retained; the kiosk reports what it applied); "
        "without --set, print the wanted and the applied version",
    )
    data(p)
    p.add_argument("kiosk_id")
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help=f"repeatable; settings: {', '.join(KioskSettings.model_fields)}",
    )  # fmt: skip


def _config(conn: Connection, args: argparse.Namespace, now: float) -> str:
    if args.set:
        pairs = [item.split("=", 1) for item in args.set]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("--set takes NAME=VALUE")
        with immediate(conn):
            config = remote_config.change(conn, args.kiosk_id, dict(pairs), now)
            audit.record(conn, CLI, "change_kiosk_config", now, target=f"kiosk:{args.kiosk_id}",
                         detail={"version": config.version})  # fmt: skip
    wanted = remote_config.current(conn, args.kiosk_id)
    row = conn.execute("SELECT config_version, config_error FROM kiosks WHERE id = ?", (args.kiosk_id,)).fetchone()
    return json.dumps(
        {
            "kiosk": args.kiosk_id,
            "wanted": wanted.model_dump(mode="json") if wanted else None,
            "applied_version": row[0] if row else None,
            "refused": row[1] if row else None,
        },
        indent=2,
    )


def run(args: argparse.Namespace) -> str:
    paths = FleetPaths(args.data)
    store = HubStore(location.for_data(args.data, getattr(args, "database", None)))
    try:
        conn = store.conn
        if args.action == "identities":
            return "\n".join(json.dumps(row) for row in listing(conn))
        now = time.time()
        if args.action == "config":
            return _config(conn, args, now)
        with immediate(conn):
            if args.action == "add":
                if args.clinic is not None:
                    if users.clinic_name(conn, args.clinic) is None:
                        raise ValueError(f"no clinic {args.clinic!r}")
                    attribution.assign_kiosk(conn, args.kiosk_id, args.clinic, now)
                if any(not url.startswith("mqtts://") for url in args.broker_url):
                    raise ValueError("--broker-url must be mqtts://: kiosks reach the broker over TLS only")
                try:
                    brokers = parse_brokers(args.broker_url, tls_only=True)
                except ValueError as exc:
                    raise ValueError(f"--broker-url: {exc}") from None
                bundle = add_kiosk(
                    conn,
                    paths,
                    args.kiosk_id,
                    broker_url=[str(b) for b in brokers],
                    hub_url=args.hub_url,
                    clinic_id=args.clinic,
                    now=now,
                )
                write_private(args.out, bundle.model_dump_json(indent=2).encode())
                action = "provision_kiosk"
            else:
                revoke_kiosk(conn, args.kiosk_id, now)
                action = "revoke_kiosk"
            audit.record(conn, CLI, action, now, clinic_id=args.clinic if args.action == "add" else None,
                         target=f"kiosk:{args.kiosk_id}")  # fmt: skip
            write_broker_files(conn, paths, now=now)  # inside: a failure here undoes the change
        reloaded = reload_broker(paths.broker_pid)
        effect = "the broker has reloaded its files" if reloaded else "the broker reads the files when it starts"
        if args.action == "add":
            return f"kiosk {args.kiosk_id} provisioned; bundle in {args.out} (import with `kiosk provision`); {effect}"
        return f"kiosk {args.kiosk_id} revoked; {effect}"
    finally:
        store.close()
