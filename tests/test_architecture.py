"""SQL lives in the store's modules by concern: none in the web routes, the FHIR routes or the API routes.

A route that needs data calls a function named for what it returns (hub/store.py, hub/accounts, hub/cases/store.py,
hub/fhir/store.py, ...); this test reads the routes' source (ast, nothing imported) and names every place that
still runs a statement itself or carries one as a string.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUTE_MODULES = sorted(
    [
        *(ROOT / "hub" / "web" / "routes").glob("*.py"),
        ROOT / "hub" / "fhir" / "routes.py",
        *(ROOT / "hub" / "api").glob("*.py"),
    ]
)
EXECUTING = frozenset({"execute", "executemany"})
STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


def sql_in(source: str, where: str) -> list[str]:
    """Every `.execute(`/`.executemany(` call and every string constant that opens with a statement, as file:line."""
    tree = ast.parse(source, filename=where)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EXECUTING:
            found.append((node.lineno, f"calls .{node.func.attr}("))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and STATEMENT.match(node.value):
            found.append((node.lineno, f"SQL string {node.value.strip()[:60]!r}"))
    return [f"{where}:{line}: {what}" for line, what in sorted(found)]


def test_the_route_modules_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in ROUTE_MODULES}
    assert {"hub/fhir/routes.py", "hub/api/routes.py", "hub/web/routes/cases.py"} <= names


def test_no_sql_in_routes() -> None:
    found = [
        hit
        for path in ROUTE_MODULES
        for hit in sql_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    ]
    assert not found, f"{len(found)} SQL statement(s) in route modules (move them to the store's modules):\n" + (
        "\n".join(found)
    )


def test_the_check_sees_sql() -> None:
    """The checker itself: an f-string's leading constant, a lower-case WITH, and a call on any object all count."""
    source = (
        "def f(conn, c, t):\n"
        '    conn.execute(f"SELECT * FROM {t}")\n'
        '    q = "\\n  with x AS (SELECT 1) SELECT 1"\n'
        '    c.executemany("INSERT INTO t VALUES (?)", [])\n'
        '    s = "Selected patients"\n'
    )
    hits = sql_in(source, "sample.py")
    assert [h.split(":")[1] for h in hits] == ["2", "2", "3", "4", "4"], hits
    assert hits[0] == "sample.py:2: SQL string 'SELECT * FROM'"
