"""`hub ...`: the hub's command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.identity import import_bundle
from device.protocol.endpoints import BrokerUrl, parse_brokers
from device.yaml_config import ConfigError
from hub import admin_cli, bench, bench_cluster, bench_idle, bench_workspace, demo_data
from hub.consults.ice import IceConfig, read_secret
from hub.db import immediate, location
from hub.fleet.identities import FleetPaths, add_kiosk, write_broker_files
from hub.ingest import IngestConfig, IngestWorker, tune_gc_for_ingest
from hub.ingest_pool import default_workers
from hub.retention import Retention
from hub.service import DEFAULT_BROKER_PORT, HubService, ServeConfig
from hub.store import HubStore

log = logging.getLogger("hub")


REPO = Path(__file__).resolve().parent.parent


def _broker(value: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(serve_defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """`serve_defaults`: the values of `hub serve --config FILE`, below any flag given."""
    parser = argparse.ArgumentParser(prog="hub", description="Telehealth hub")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def serve_args(p: argparse.ArgumentParser) -> None:
        p.set_defaults(retention=Retention())  # only from the configuration file: no flag
        p.add_argument("--data", type=Path, default=Path("data/hub"), help="folder for database, broker, tokens")
        location.add_argument(p)
        p.add_argument(
            "--instance",
            type=_instance,
            default=None,
            help="this instance's name, when several share one PostgreSQL database (metrics, ingest's client ids)",
        )
        p.add_argument(
            "--broker",
            type=_brokers,
            default=None,
            help="external broker mqtt[s]://host:port, or several, comma-separated: ingest subscribes on each "
            "(kiosks given the same list fail over between them)",
        )
        p.add_argument("--broker-ca", type=Path, default=None, help="CA file for mqtts:// (default: system CAs)")
        p.add_argument(
            "--broker-user", default=None, help="ingest's user name on an external broker (`hub-ingest` in ours)"
        )
        p.add_argument(
            "--broker-password-file", type=Path, default=None, help="file holding ingest's password on --broker"
        )
        p.add_argument(
            "--broker-port", type=int, default=DEFAULT_BROKER_PORT, help="embedded broker: the hub's loopback port"
        )
        p.add_argument("--mqtt-port", type=int, default=8883, help="embedded broker: the kiosks' TLS port")
        p.add_argument("--mqtt-bind", default="127.0.0.1", help="embedded broker: address of the kiosks' TLS listener")
        p.add_argument(
            "--mqtt-name", action="append", default=[], metavar="NAME",
            help="embedded broker: a host name or address kiosks use to reach it (in its certificate), repeatable",
        )  # fmt: skip
        p.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
        p.add_argument("--port", type=int, default=8080, help="HTTP port")
        p.add_argument(
            "--workers",
            type=_at_least_one,
            default=default_workers(),
            help="ingest worker processes on one shared subscription (default: one per core, at most 2)",
        )
        p.add_argument("--tls-cert", type=Path, default=None, help="HTTPS certificate (PEM); required off loopback")
        p.add_argument("--tls-key", type=Path, default=None, help="HTTPS private key (PEM)")
        p.add_argument(
            "--ice-server", action="append", default=[], metavar="URL",
            help="live consults: a STUN server (stun:host:3478), repeatable; none = host candidates only, "
            "never a public default",
        )  # fmt: skip
        p.add_argument(
            "--turn-url", action="append", default=[], metavar="URL",
            help="live consults: the coturn server (turn:host:3478?transport=udp), repeatable; "
            "needs --turn-secret-file",
        )  # fmt: skip
        p.add_argument(
            "--turn-secret-file", type=Path, default=None, metavar="FILE",
            help="file holding coturn's static-auth-secret: per-consult TURN credentials valid one hour",
        )  # fmt: skip
        p.add_argument(
            "--turn-relay-only", action="store_true",
            help="live consults: media only through the TURN server (networks that forbid direct paths)",
        )  # fmt: skip

    serve = sub.add_parser("serve", help="run the hub: embedded broker, ingest and API")
    serve_args(serve)
    serve.add_argument("--config", type=Path, default=None, help="the hub's configuration file (YAML; flags win)")
    if serve_defaults:
        serve.set_defaults(**serve_defaults)
    check = sub.add_parser("config", help="the hub's configuration file").add_subparsers(dest="action", required=True)
    p = check.add_parser("check", help="validate it and the files it names; print each problem as file:line: message")
    p.add_argument("file", type=Path)
    demo = sub.add_parser("demo", help="run the hub and a simulated kiosk; print where readings appear")
    serve_args(demo)
    demo.add_argument("--kiosk-id", default="demo-kiosk")
    demo.add_argument("--kiosk-port", type=int, default=8090, help="the kiosk screen's port on 127.0.0.1")

    ingest = sub.add_parser("ingest", help="run one ingest worker only (beside others, on a shared subscription)")
    ingest.add_argument("--data", type=Path, default=Path("data/hub"))
    location.add_argument(ingest)
    ingest.add_argument("--broker", type=_broker, required=True)
    ingest.add_argument("--broker-ca", type=Path, default=None, help="CA file for mqtts:// (default: system CAs)")
    ingest.add_argument(
        "--client-id",
        default="hub-ingest:1",
        help="unique per worker (the user name, a colon, a suffix); its session survives restarts",
    )
    ingest.add_argument("--batch", type=int, default=1000, help="most envelopes per transaction")

    admin_cli.add_arguments(sub)

    keep = sub.add_parser("retention", help="purge what the retention settings say is past keeping")
    keep_sub = keep.add_subparsers(dest="action", required=True)
    purge = keep_sub.add_parser("apply", help="purge now (hub serve also does, every six hours)")
    purge.add_argument("--data", type=Path, default=Path("data/hub"))
    location.add_argument(purge)
    purge.add_argument("--config", type=Path, default=None, help="hub.yaml with a `retention` section (else defaults)")
    purge.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")

    _backup_arguments(sub)

    bench_parser = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench_parser.add_subparsers(dest="bench", required=True)
    bench.add_arguments(bench_sub.add_parser("ingest", help="bare subscriber vs full ingest path, latency, drain"))
    bench_idle.add_arguments(bench_sub.add_parser("kiosk-idle", help="CPU and memory of an idle kiosk agent"))
    bench_workspace.add_arguments(
        bench_sub.add_parser("workspace", help="p50/p95 of the patient list and patient page over 1M readings")
    )
    bench_cluster.add_arguments(
        bench_sub.add_parser("cluster", help="two instances on PostgreSQL, one killed mid-drain")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "config" or (args.command == "serve" and args.config is not None):
        from hub import hub_config  # noqa: PLC0415 - only for these two commands

        try:
            checked = hub_config.check(args.file if args.command == "config" else args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        if args.command == "config":
            print(checked.summary)
            return 0
        args = build_parser(serve_defaults=checked.as_defaults()).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    benches: dict[str, Callable[[argparse.Namespace], int]] = {
        "ingest": bench.run,
        "kiosk-idle": bench_idle.run,
        "workspace": bench_workspace.run,
        "cluster": bench_cluster.run,
    }
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": _serve,
        "demo": _demo,
        "ingest": _ingest,
        "bench": lambda a: benches[a.bench](a),
        "retention": _retention,
        "backup": _backup,
        "restore": _restore,
        **dict.fromkeys(("clinics", "users", "kiosks", "patients", "token", "triage", "questionnaires"), admin_cli.run),
    }
    return commands[args.command](args)


def _retention(args: argparse.Namespace) -> int:
    from hub import hub_config, retention  # noqa: PLC0415 - only for this command

    policy = retention.Retention()
    if args.config is not None:
        try:
            checked = hub_config.check(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        policy = checked.config.retention
    store = HubStore(location.for_data(args.data, args.database))
    try:
        counts = retention.apply(store.conn, policy, time.time(), dry_run=args.dry_run)
    finally:
        store.close()
    verb = "would purge" if args.dry_run else "purged"
    clinical = f"after {policy.clinical_records_days} days" if policy.clinical_records_days else "kept (not set)"
    print(f"clinical records: {clinical}")
    for what, n in counts.items():
        print(f"{verb} {n} {what}")
    return 0


def _backup_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    save = sub.add_parser(
        "backup", help="write one owner-only archive of the hub's database and CA, consistent while it serves"
    )
    save.add_argument("--data", type=Path, default=Path("data/hub"), help="the hub's data folder (its CA)")
    location.add_argument(save)
    save.add_argument(
        "--to", type=Path, default=None, metavar="FILE",
        help="the archive to write, never overwritten (default: hub-backup-<UTC time>.tar.gz here)",
    )  # fmt: skip
    save.add_argument("--json", action="store_true", help="print the summary as JSON")
    load = sub.add_parser("restore", help="make a data folder the hub in a backup archive (the hub stopped)")
    load.add_argument("--data", type=Path, required=True, help="the data folder to restore into")
    location.add_argument(load)  # PostgreSQL: the empty database to restore into; SQLite: DATA/hub.db only
    load.add_argument("--from", dest="source", type=Path, required=True, metavar="FILE", help="the archive")
    load.add_argument(
        "--force", action="store_true",
        help="replace a folder that already holds a hub (it is kept beside it as .NAME.before-restore-<time>); "
        "on PostgreSQL also drop the target database's public schema, with everything in it, first",
    )  # fmt: skip
    load.add_argument("--json", action="store_true", help="print the summary as JSON")


def _backup(args: argparse.Namespace) -> int:
    from hub import backup  # noqa: PLC0415 - only for this command

    target = args.to if args.to is not None else backup.default_archive(datetime.now(UTC))
    try:
        done = backup.backup(args.data, target, location.for_data(args.data, args.database))
    except (backup.BackupError, location.LocationError) as exc:
        print(f"hub backup: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the folder cannot be written, the disk filled: one line, no traceback
        print(f"hub backup: {exc}; no archive was written", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(done.summary(), indent=2))
    else:
        m = done.manifest
        print(f"wrote {done.archive} ({done.bytes} bytes in {done.seconds:.1f} s), mode 0600 (owner only)")
        print(f"holds: {', '.join(x.path for x in m.members)} (schema {m.schema_version}, hub {m.hub_version})")
        if m.postgres is not None:
            print(f"database: pg_dump {m.postgres.pg_dump_version} of PostgreSQL {m.postgres.server_version}")
        print(f"recovery point: {m.created.isoformat()} (everything committed before it is in the archive)")
        print("it holds patient data and the CA's private key: keep it owner-only and encrypted, never world-readable")
    if done.audited is not None:
        print(f"hub backup: warning: not in the audit log ({done.audited})", file=sys.stderr)
    return 0


def _restore(args: argparse.Namespace) -> int:
    from hub import backup  # noqa: PLC0415 - only for this command

    try:
        database = location.for_data(args.data, args.database)
        done = backup.restore(args.source, args.data, force=args.force, database=database)
    except (backup.BackupError, location.LocationError) as exc:
        print(f"hub restore: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hub restore: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(done.summary(), indent=2))
        return 0
    m = done.manifest
    into = f"{done.database} and {done.data_dir}" if m.store == "postgresql" else str(done.data_dir)
    print(f"restored {args.source} into {into} in {done.seconds:.1f} s")
    print(f"recovery point: {m.created.isoformat()} (schema {m.schema_version}, made by hub {m.hub_version})")
    if done.replaced is not None:
        print(f"the folder it replaced is kept at {done.replaced}: delete it once the restored hub runs")
    on = f"--data {done.data_dir} --database {done.database}" if m.store == "postgresql" else str(done.data_dir)
    print(f"next: start the hub on {on}; kiosks reconnect and resend what it never receipted")
    return 0


INSTANCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _brokers(value: str) -> tuple[BrokerUrl, ...]:
    """One broker or several, comma-separated, checked as a kiosk checks its list (device.protocol.endpoints)."""
    try:
        return parse_brokers([part.strip() for part in value.split(",") if part.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _instance(text: str) -> str:
    if not INSTANCE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: 1 to 32 letters, digits, '.', '_' or '-'")
    return text


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    try:
        service = HubService(_serve_config(args))
    except ValueError as exc:  # bad TLS or ICE options (IceConfigError is one)
        print(f"hub serve: {exc}", file=sys.stderr)
        return 2
    service.serve_forever()
    return 0


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        data_dir=args.data,
        database=location.for_data(args.data, args.database),
        instance=args.instance,
        broker=args.broker[0] if args.broker else None,
        more_brokers=tuple(args.broker[1:]) if args.broker else (),
        broker_port=args.broker_port,
        http_host=args.host,
        http_port=args.port,
        workers=args.workers,
        broker_ca=args.broker_ca,
        broker_user=args.broker_user,
        broker_password=read_secret(str(args.broker_password_file)) if args.broker_password_file else None,
        mqtt_port=args.mqtt_port,
        mqtt_bind=args.mqtt_bind,
        mqtt_names=tuple(args.mqtt_name),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        retention=args.retention if isinstance(args.retention, Retention) else Retention.model_validate(args.retention),
        ice=IceConfig(
            stun_urls=tuple(args.ice_server),
            turn_urls=tuple(args.turn_url),
            turn_secret=read_secret(str(args.turn_secret_file)) if args.turn_secret_file else None,
            relay_only=args.turn_relay_only,
        ),
    )


def _ingest(args: argparse.Namespace) -> int:
    config = IngestConfig(
        broker=args.broker,
        client_id=args.client_id,
        batch_max=args.batch,
        ca_file=str(args.broker_ca) if args.broker_ca else None,
        fleet_data=args.data,
    )
    worker = IngestWorker(location.for_data(args.data, args.database), config)
    tune_gc_for_ingest()
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        service = HubService(_serve_config(args))
    except ValueError as exc:  # bad TLS or ICE options (IceConfigError is one)
        print(f"hub demo: {exc}", file=sys.stderr)
        return 2
    kiosk_data = args.data.parent / "kiosk"
    store = HubStore(service.database)
    try:
        logins = demo_data.seed(store, args.kiosk_id, datetime.now(UTC))
        # The demo kiosk is provisioned as a real one is (`hub kiosks add`, then `kiosk provision`), afresh each
        # run: it reaches the broker over TLS with its certificate and password, and the hub with its credential.
        fleet = FleetPaths(args.data)
        with immediate(store.conn) as conn:
            now = time.time()
            bundle = add_kiosk(
                conn, fleet, args.kiosk_id, broker_url=service.kiosk_broker_url, hub_url=service.base_url,
                clinic_id=None, now=now,
            )  # fmt: skip
            write_broker_files(conn, fleet, now=now)
        import_bundle(bundle.model_dump_json().encode(), kiosk_data)
    finally:
        store.close()
    kiosk: subprocess.Popen[bytes] | None = None
    browser: subprocess.Popen[bytes] | None = None

    def start_kiosk() -> None:
        nonlocal kiosk, browser
        service.ingest.wait_ready(15)
        face, skin = demo_camera_videos(kiosk_data)
        screen_url = f"http://127.0.0.1:{args.kiosk_port}/"
        command = [
            sys.executable, "-m", "device.cli", "serve",
            "--data", str(kiosk_data),
            "--heartbeat", "10",
            "--port", str(args.kiosk_port),
            "--ble", "virtual",
            "--camera-profile", str(REPO / "firmware_configs" / "kiosk" / "video-file.yaml"),
            "--camera-video", str(face),
            "--camera-skin-video", str(skin),
            "--camera-seconds", "30",
        ]  # fmt: skip
        kiosk = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # stopped by us after the hub, not by the terminal's Ctrl-C
        )
        browser = _open_kiosk_window(screen_url, kiosk_data / "browser")
        print(
            "\n"
            f"  Kiosk screen:       {screen_url}  (the patient's touchscreen; "
            f"{'opened in a window' if browser else 'open it in Chromium or any browser on this machine'})\n"
            f"    check in with code {logins.patient_codes[0]}, or {logins.pin_patient} with PIN {demo_data.DEMO_PIN};"
            " the cuff, oximeter and thermometer are simulated Bluetooth devices, the camera a video\n"
            "    (a face; on the photo page a forearm with a rash, as a patient would hold it up)\n"
            f"  Provider workspace: {service.base_url}/login  (the triage queue has alerts and a case waiting)\n"
            f"    provider     {demo_data.PROVIDER_EMAIL}   password {logins.provider_password}\n"
            f"    clinic admin {demo_data.ADMIN_EMAIL}      password {logins.admin_password}\n"
            "  A case sent at the kiosk appears in the triage queue; answer it there and check in again to read it.\n"
            "  'See a provider now' at the kiosk puts the patient in Consults (workspace menu): join from there for a\n"
            "  video call (the browser asks for your camera and microphone).\n"
            f"  API docs: {service.base_url}/docs   (tokens: hub token create --data {args.data} ...)\n"
            "  Ctrl-C stops hub, broker and kiosk.\n",
            flush=True,
        )

    def stop_kiosk() -> None:
        for proc in (browser, kiosk):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=15)

    threading.Thread(target=start_kiosk, daemon=True).start()
    service.serve_forever(before_stop=stop_kiosk)
    return 0


def demo_camera_videos(kiosk_data: Path, face_seconds: float = 34) -> tuple[Path, Path]:
    """What the demo kiosk's camera sees, rendered once: a synthetic face with a known pulse (68/min), and for
    the photo page a forearm with a rash (a face there is refused, rightly, so a photo could never be taken)."""
    from device.camera.synthetic import SyntheticSpec, write_mjpg, write_skin_video  # noqa: PLC0415 - demo only

    face, skin = kiosk_data / "camera-demo.avi", kiosk_data / "camera-demo-skin.avi"
    kiosk_data.mkdir(parents=True, exist_ok=True)
    if not face.exists():
        print("  rendering the demo camera's video (a few seconds, once)", flush=True)
        write_mjpg(SyntheticSpec(seconds=face_seconds, fps=15, heart_rate_bpm=68, breathing_rate_bpm=14), face)
    if not skin.exists():
        write_skin_video(skin)
    return face, skin


def _open_kiosk_window(url: str, profile: Path) -> subprocess.Popen[bytes] | None:
    """On a machine with a display, show the kiosk screen as the Pi would (an app window, profile thrown away)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None
    command = [chromium, f"--app={url}", f"--user-data-dir={profile}", "--incognito", "--no-first-run"]
    return subprocess.Popen(
        [*command, "--window-size=1024,768"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
