"""`hub clinics|users|kiosks|token ...`: setting up who may see what, from the hub's own shell.

These act on the database directly (the operator is on the hub machine); each change is
written to the audit log as `cli`. Passwords are read from stdin or a prompt, never argv,
so they stay out of shell history and process lists.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys
import time
from pathlib import Path

from hub import attribution, audit
from hub.accounts import passwords, tokens, users
from hub.audit import Actor
from hub.store import HubStore, immediate

CLI = Actor("cli", None)


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, default=Path("data/hub"), help="the hub's data folder")

    clinics = sub.add_parser("clinics", help="clinics (tenants)").add_subparsers(dest="action", required=True)
    p = clinics.add_parser("add", help="create a clinic")
    data(p)
    p.add_argument("clinic_id", help="short id: lower-case letters, digits, dashes")
    p.add_argument("name")
    data(clinics.add_parser("list", help="list clinics"))

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


def run(args: argparse.Namespace) -> int:
    store = HubStore(args.data / "hub.db")
    conn = store.db.conn
    now = time.time()
    try:
        if args.command == "clinics" and args.action == "list":
            for clinic_id, name in users.clinics(conn):
                print(f"{clinic_id}\t{name}")
            return 0
        if args.command == "token" and args.action == "list":
            for row in tokens.listing(conn):
                print(json.dumps(row))
            return 0
        secret = _password(args) if args.command == "users" else None
        with immediate(conn):
            out = _change(conn, args, now, secret)
        print(out)
        return 0
    except (users.AccountError, passwords.PasswordPolicyError, tokens.TokenError, ValueError) as exc:
        print(f"hub {args.command} {args.action}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _change(conn: sqlite3.Connection, args: argparse.Namespace, now: float, secret: str | None) -> str:
    if args.command == "clinics":
        users.create_clinic(conn, args.clinic_id, args.name, now)
        audit.record(conn, CLI, "create_clinic", now, clinic_id=args.clinic_id)
        return f"clinic {args.clinic_id} created"
    if args.command == "users":
        assert secret is not None
        user_id = users.create_user(
            conn, clinic_id=args.clinic, email=args.email, name=args.name, role=args.role, password=secret, now=now
        )
        audit.record(conn, CLI, "create_user", now, clinic_id=args.clinic, target=f"user:{user_id}")
        return f"account {args.email} ({args.role}) created in {args.clinic}"
    if args.command == "kiosks":
        if users.clinic_name(conn, args.clinic_id) is None:
            raise ValueError(f"no clinic {args.clinic_id!r}")
        n = attribution.assign_kiosk(conn, args.kiosk_id, args.clinic_id, now)
        audit.record(conn, CLI, "assign_kiosk", now, clinic_id=args.clinic_id, target=f"kiosk:{args.kiosk_id}")
        return f"kiosk {args.kiosk_id} now belongs to {args.clinic_id}; {n} waiting reading(s) will be attributed"
    if args.command == "token" and args.action == "create":
        token = tokens.create(conn, args.name, args.clinic, args.scope, now)
        audit.record(conn, CLI, "create_token", now, clinic_id=args.clinic, target=f"token:{args.name}")
        return token
    if args.command == "token" and args.action == "revoke":
        if not tokens.revoke(conn, args.token_id, now):
            raise ValueError(f"no live token {args.token_id}")
        audit.record(conn, CLI, "revoke_token", now, target=f"token-id:{args.token_id}")
        return f"token {args.token_id} revoked"
    raise ValueError(f"unknown command {args.command} {args.action}")
