"""`hub clinics|users|kiosks|patients|token ...`: setting up who may see what, from the hub's own shell.

These act on the database directly (the operator is on the hub machine); each change is
written to the audit log as `cli`. Passwords and kiosk PINs are read from stdin or a prompt,
never argv, so they stay out of shell history and process lists (and never reach the audit log).
Secrets the hub makes (API tokens, kiosk credentials) are printed once and stored only as SHA-256.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from device.yaml_config import ConfigError, load_model
from hub import attribution, audit, kiosk_setup
from hub.accounts import kiosk_credentials, passwords, tokens, users
from hub.audit import Actor
from hub.cases import questionnaire
from hub.cases.questionnaire import Questionnaire
from hub.db import Connection, immediate, location
from hub.fleet import cli as fleet_cli
from hub.fleet.identities import IdentityError
from hub.fleet.remote_config import ConfigChangeError
from hub.store import HubStore
from hub.triage import alerts as triage
from hub.triage.config import PatientOverrides, TriageConfig

CLI = Actor("cli", None)


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, default=Path("data/hub"), help="the hub's data folder")
        location.add_argument(p)

    clinics = sub.add_parser("clinics", help="clinics (tenants)").add_subparsers(dest="action", required=True)
    p = clinics.add_parser("add", help="create a clinic")
    data(p)
    p.add_argument("clinic_id", help="short id: lower-case letters, digits, dashes")
    p.add_argument("name")
    data(clinics.add_parser("list", help="list clinics"))
    p = clinics.add_parser("kiosk-pin", help="whether patients must enter their PIN after their code at the kiosk")
    data(p)
    p.add_argument("--clinic", required=True)
    p.add_argument("state", choices=["on", "off"])

    people = sub.add_parser("users", help="provider and clinic-admin accounts").add_subparsers(
        dest="action", required=True
    )
    p = people.add_parser("add", help="create an account; the password is read from stdin or prompted")
    data(p)
    p.add_argument("--clinic", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=users.ROLES, default="provider")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")

    kiosks = sub.add_parser("kiosks", help="kiosks").add_subparsers(dest="action", required=True)
    p = kiosks.add_parser("assign", help="put a kiosk in a clinic (its waiting readings are then attributed)")
    data(p)
    p.add_argument("kiosk_id")
    p.add_argument("clinic_id")
    p = kiosks.add_parser(
        "credential", help="create or replace the kiosk's secret for live consults and print it (shown only once)"
    )
    data(p)
    p.add_argument("--kiosk", required=True, help="the kiosk id")
    p = kiosks.add_parser(
        "revoke-credential", help="revoke the kiosk's secret (an open socket closes at its next check, within 30 s)"
    )
    data(p)
    p.add_argument("--kiosk", required=True, help="the kiosk id")

    fleet_cli.add_parsers(kiosks, data)

    pts = sub.add_parser("patients", help="patients").add_subparsers(dest="action", required=True)
    p = pts.add_parser("pin", help="set a patient's kiosk PIN (4 to 8 digits, read from stdin or prompted)")
    data(p)
    p.add_argument("--clinic", required=True)
    p.add_argument("--code", required=True, help="the patient's check-in code")
    p.add_argument("--clear", action="store_true", help="remove the patient's PIN instead")

    triage_cmd = sub.add_parser("triage", help="alert rules").add_subparsers(dest="action", required=True)
    p = triage_cmd.add_parser("check", help="validate a rules file; print each problem as file:line: message")
    p.add_argument("file", type=Path)
    p = triage_cmd.add_parser("set", help="validate a rules file and make it the clinic's rules")
    data(p)
    p.add_argument("--clinic", required=True)
    p.add_argument("file", type=Path)
    p = triage_cmd.add_parser("override", help="one patient's overrides of clinic rules (same ids; enabled: false)")
    data(p)
    p.add_argument("--patient", required=True, help="patient id (pt_...)")
    p.add_argument("file", type=Path)
    p = triage_cmd.add_parser("show", help="print a clinic's rules (the defaults until set) as JSON")
    data(p)
    p.add_argument("--clinic", required=True)

    quest = sub.add_parser("questionnaires", help="intake questionnaires").add_subparsers(dest="action", required=True)
    p = quest.add_parser("check", help="validate a questionnaire file; print each problem as file:line: message")
    p.add_argument("file", type=Path)
    p = quest.add_parser("set", help="add a validated questionnaire (a new id or version) to a clinic")
    data(p)
    p.add_argument("--clinic", required=True)
    p.add_argument("file", type=Path)

    token = sub.add_parser("token", help="API tokens for other systems").add_subparsers(dest="action", required=True)
    p = token.add_parser("create", help="create a token and print it (shown only once)")
    data(p)
    p.add_argument("--name", required=True, help="who uses it, e.g. 'ehr-bridge'")
    p.add_argument("--clinic", default=None, help="the clinic it may see (omit for a fleet operator's token)")
    p.add_argument("--scope", action="append", choices=sorted(tokens.SCOPES), required=True, help="repeatable")
    data(token.add_parser("list", help="list tokens (never their secrets)"))
    p = token.add_parser("revoke", help="revoke a token at once")
    data(p)
    p.add_argument("token_id", type=int)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _pin(args: argparse.Namespace) -> str:
    """The PIN's hash, made before the write transaction (argon2 is slow on purpose); the PIN goes no further."""
    if sys.stdin.isatty():
        pin = getpass.getpass("Kiosk PIN (4 to 8 digits): ")
        if getpass.getpass("Again: ") != pin:
            raise ValueError("the two PINs differ")
    else:
        pin = sys.stdin.readline().rstrip("\n")
    return kiosk_setup.hash_pin(pin)


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "kiosks" and args.action in fleet_cli.ACTIONS:
            out = fleet_cli.run(args)
        else:
            out = _check_file(args) if args.action == "check" else _with_store(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (
        users.AccountError,
        passwords.PasswordPolicyError,
        tokens.TokenError,
        kiosk_credentials.CredentialError,
        IdentityError,
        ConfigChangeError,
        ValueError,
        LookupError,
    ) as exc:
        print(f"hub {args.command} {args.action}: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _check_file(args: argparse.Namespace) -> str:
    """`... check FILE`: validation only, no database."""
    if args.command == "questionnaires":
        q = load_model(args.file, Questionnaire, document="a questionnaire")
        return f"{args.file}: {q.id} v{q.version}, {len(q.items)} item(s)"
    config = load_model(args.file, TriageConfig, document="a triage rules file")
    return f"{args.file}: {len(config.rules)} rule(s), NEWS2 {'on' if config.news2.enabled else 'off'}"


def _with_store(args: argparse.Namespace) -> str:
    store = HubStore(location.for_data(args.data, args.database))
    try:
        out = _query(store.conn, args)
        if out is None:
            secret = None
            if args.command == "users":
                secret = _password(args)
            elif args.command == "patients" and not args.clear:
                secret = _pin(args)
            with immediate(store.conn) as conn:
                out = _change(conn, args, time.time(), secret)
        return out
    finally:
        store.close()


def _query(conn: Connection, args: argparse.Namespace) -> str | None:
    """The read-only commands' output; None for the commands that change something."""
    if args.command == "clinics" and args.action == "list":
        return "\n".join(f"{clinic_id}\t{name}" for clinic_id, name in users.clinics(conn))
    if args.command == "triage" and args.action == "show":
        return triage.clinic_config(conn, args.clinic).model_dump_json(indent=2)
    if args.command == "token" and args.action == "list":
        return "\n".join(json.dumps(row) for row in tokens.listing(conn))
    return None


def _change(conn: Connection, args: argparse.Namespace, now: float, secret: str | None) -> str:
    """`secret`: the new account's password, or the hash of the patient's new kiosk PIN."""
    if args.command == "users":
        assert secret is not None
        user_id = users.create_user(
            conn, clinic_id=args.clinic, email=args.email, name=args.name, role=args.role, password=secret, now=now
        )
        audit.record(conn, CLI, "create_user", now, clinic_id=args.clinic, target=f"user:{user_id}")
        return f"account {args.email} ({args.role}) created in {args.clinic}"
    if args.command == "patients":
        return _change_patient_pin(conn, args, now, secret)
    if args.command == "kiosks" and args.action != "assign":
        return _change_kiosk_credential(conn, args, now)
    if args.command == "kiosks":
        if users.clinic_name(conn, args.clinic_id) is None:
            raise ValueError(f"no clinic {args.clinic_id!r}")
        n = attribution.assign_kiosk(conn, args.kiosk_id, args.clinic_id, now)
        audit.record(conn, CLI, "assign_kiosk", now, clinic_id=args.clinic_id, target=f"kiosk:{args.kiosk_id}")
        return f"kiosk {args.kiosk_id} now belongs to {args.clinic_id}; {n} waiting reading(s) will be attributed"
    others: dict[str, Callable[[Connection, argparse.Namespace, float], str]] = {
        "clinics": _change_clinics,
        "triage": _change_triage,
        "questionnaires": _change_questionnaires,
        "token": _change_token,
    }
    return others[args.command](conn, args, now)


def _change_kiosk_credential(conn: Connection, args: argparse.Namespace, now: float) -> str:
    """The kiosk's identity on its consult socket; the secret is printed, never stored or audited."""
    row = conn.execute("SELECT clinic_id FROM kiosks WHERE id = ?", (args.kiosk,)).fetchone()
    clinic_id = row[0] if row else None
    if args.action == "credential":
        secret = kiosk_credentials.issue(conn, args.kiosk, now)
        audit.record(conn, CLI, "issue_kiosk_credential", now, clinic_id=clinic_id, target=f"kiosk:{args.kiosk}")
        return secret
    if not kiosk_credentials.revoke(conn, args.kiosk, now):
        raise ValueError(f"kiosk {args.kiosk!r} has no live credential")
    audit.record(conn, CLI, "revoke_kiosk_credential", now, clinic_id=clinic_id, target=f"kiosk:{args.kiosk}")
    return f"kiosk {args.kiosk}: credential revoked"


def _change_clinics(conn: Connection, args: argparse.Namespace, now: float) -> str:
    if args.action == "kiosk-pin":
        required = args.state == "on"
        n = kiosk_setup.set_pin_required(conn, args.clinic, required, now)
        audit.record(conn, CLI, "set_kiosk_pin_required", now, clinic_id=args.clinic, detail={"required": required})
        return f"clinic {args.clinic}: kiosk PIN {args.state}; {n} kiosk(s) will get the new setup"
    users.create_clinic(conn, args.clinic_id, args.name, now)
    audit.record(conn, CLI, "create_clinic", now, clinic_id=args.clinic_id)
    return f"clinic {args.clinic_id} created"


def _change_questionnaires(conn: Connection, args: argparse.Namespace, now: float) -> str:
    if users.clinic_name(conn, args.clinic) is None:
        raise ValueError(f"no clinic {args.clinic!r}")
    q = load_model(args.file, Questionnaire, document="a questionnaire")
    questionnaire.store(conn, args.clinic, q, "cli", now)
    n = kiosk_setup.refresh(conn, args.clinic, now)
    target = f"questionnaire:{q.id}:{q.version}"
    audit.record(conn, CLI, "set_questionnaire", now, clinic_id=args.clinic, target=target)
    return f"clinic {args.clinic}: questionnaire {q.id} version {q.version}; {n} kiosk(s) will get it"


def _change_patient_pin(conn: Connection, args: argparse.Namespace, now: float, pin_hash: str | None) -> str:
    row = conn.execute("SELECT id FROM patients WHERE clinic_id = ? AND code = ?", (args.clinic, args.code)).fetchone()
    if row is None:
        raise ValueError(f"no patient with check-in code {args.code!r} at clinic {args.clinic!r}")
    n = kiosk_setup.set_pin(conn, args.clinic, row[0], None if args.clear else pin_hash, now)
    action = "clear_kiosk_pin" if args.clear else "set_kiosk_pin"
    audit.record(conn, CLI, action, now, clinic_id=args.clinic, patient_id=row[0])
    done = "cleared" if args.clear else "set"
    return f"patient {args.code} of {args.clinic}: kiosk PIN {done}; {n} kiosk(s) will get the new setup"


def _change_token(conn: Connection, args: argparse.Namespace, now: float) -> str:
    if args.action == "create":
        token = tokens.create(conn, args.name, args.clinic, args.scope, now)
        audit.record(conn, CLI, "create_token", now, clinic_id=args.clinic, target=f"token:{args.name}")
        return token
    if args.action == "revoke":
        if not tokens.revoke(conn, args.token_id, now):
            raise ValueError(f"no live token {args.token_id}")
        audit.record(conn, CLI, "revoke_token", now, target=f"token-id:{args.token_id}")
        return f"token {args.token_id} revoked"
    raise ValueError(f"unknown command {args.command} {args.action}")


def _change_triage(conn: Connection, args: argparse.Namespace, now: float) -> str:
    if args.action == "set":
        if users.clinic_name(conn, args.clinic) is None:
            raise ValueError(f"no clinic {args.clinic!r}")
        config = load_model(args.file, TriageConfig, document="a triage rules file")
        version = triage.set_clinic_config(conn, args.clinic, config, "cli", now)
        audit.record(conn, CLI, "set_triage_rules", now, clinic_id=args.clinic, detail={"version": version})
        return f"clinic {args.clinic}: {len(config.rules)} rule(s), version {version}"
    if args.action == "override":
        row = conn.execute("SELECT clinic_id FROM patients WHERE id = ?", (args.patient,)).fetchone()
        if row is None:
            raise ValueError(f"no patient {args.patient!r}")
        overrides = load_model(args.file, PatientOverrides, document="a patient's rule overrides")
        triage.set_patient_overrides(conn, row[0], args.patient, overrides.rules, by="cli", now=now)
        audit.record(conn, CLI, "set_patient_rules", now, clinic_id=row[0], patient_id=args.patient)
        return f"patient {args.patient}: {len(overrides.rules)} override(s)"
    raise ValueError(f"unknown command triage {args.action}")
