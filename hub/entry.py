"""The `hub` console script's entry point: it imports the command line only when called.

multiprocessing's spawn runs the parent's main script again in every child it starts (ingest
workers, benchmark children), and pip's generated script imports its entry point's module at
its top. Pointed at `hub.cli`, that loaded the whole command line (FastAPI, the web app, the
benchmarks) into each ingest worker: 87 MB and about 0.7 s of start per worker, for modules
it never uses. The child now imports this module and then only what its target needs.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from hub.cli import main as cli_main  # noqa: PLC0415 - the point of this module

    return cli_main(argv)
