"""One shape for a staff action on an alert or a case: do it and audit it in one transaction, answer with a redirect.

`LookupError` from the action means "not at this clinic" (404, like any other object of
another clinic); the domain's own errors go back to the page as a message.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import HTTPException, Response
from fastapi.responses import RedirectResponse

from hub import audit
from hub.db import Connection
from hub.web.security import Principal
from hub.workspace import Workspace

# An action inside the caller's transaction; returns the patient concerned, for the audit log.
Action = Callable[[Connection, float], str | None]


def perform(
    ws: Workspace,
    principal: Principal,
    *,
    action: str,
    target: str,
    run: Action,
    back: str,
    errors: tuple[type[Exception], ...],
) -> Response:
    now = ws.now()
    try:
        with ws.write() as w:
            patient_id = run(w, now)
            audit.record(w, principal.actor, action, now, patient_id=patient_id, target=target)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except errors as exc:
        return RedirectResponse(f"{back}?error={quote(str(exc))}", status_code=303)
    return RedirectResponse(back, status_code=303)
