"""Find or start a PostgreSQL server for the tests and the demo.

Order: DATABASE_URL / PG* environment, then a server on 127.0.0.1:5432, then a throwaway
cluster made with the system's initdb/pg_ctl (fsync off, on a free port, removed at exit).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HOW_TO_GET_POSTGRES = (
    "PostgreSQL is needed for these tests and none could be found or started. Either set "
    "DATABASE_URL (postgresql://user@host:port/db) to a server where that user may CREATE "
    "DATABASE, run one on 127.0.0.1:5432, or install the server binaries (Debian/Ubuntu: "
    "`apt-get install postgresql`; macOS: `brew install postgresql`) so the tests can start "
    "a throwaway cluster themselves."
)


def _reachable(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binaries() -> tuple[str, str] | None:
    for directory in [None, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        initdb = shutil.which("initdb", path=directory)
        pg_ctl = shutil.which("pg_ctl", path=directory)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


def _run_as_postgres(root: str) -> list[str]:
    """initdb and pg_ctl refuse to run as root: as root, run them as the `postgres` user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    try:
        shutil.chown(root, "postgres")
    except LookupError:
        runuser = None
    if not runuser:
        raise RuntimeError("Running as root, a throwaway PostgreSQL needs the `postgres` user and "
                           "`runuser` (util-linux) to start as that user. " + HOW_TO_GET_POSTGRES)
    return [runuser, "-u", "postgres", "--"]


@contextmanager
def throwaway_cluster(password: str | None = None) -> Iterator[str]:
    """A cluster of our own on a free port, removed at exit; with `password`, TCP logins need it."""
    found = _binaries()
    if not found:
        raise RuntimeError(HOW_TO_GET_POSTGRES)
    initdb, pg_ctl = found
    root = tempfile.mkdtemp(prefix="dpo-pg-")
    data = os.path.join(root, "data")
    run_as = _run_as_postgres(root)
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = os.path.join(root, "pw")
        with open(pwfile, "w") as f:
            f.write(password)
        if run_as:
            shutil.chown(pwfile, "postgres")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    port = _free_port()
    subprocess.run([*run_as, initdb, "-D", data, "-U", "postgres", *auth, "-E", "UTF8"],
                   check=True, capture_output=True)
    options = f"-c fsync=off -c listen_addresses=127.0.0.1 -p {port} -k {root}"
    subprocess.run([*run_as, pg_ctl, "-D", data, "-o", options, "-w", "-l",
                    os.path.join(root, "log"), "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin conninfo URL for a server where databases may be created."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    if any(k in os.environ for k in ("PGHOST", "PGPORT", "PGUSER")):
        url = make_conninfo("", dbname=os.environ.get("PGDATABASE", "postgres"))
        if _reachable(url):
            yield url
            return
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _reachable(local):
        yield local
        return
    with throwaway_cluster() as url:
        time.sleep(0.1)
        yield url


def with_database(admin_url: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def to_url(conninfo: str) -> str:
    """A postgresql:// URL (for SQLAlchemy) from any libpq conninfo."""
    p = conninfo_to_dict(conninfo)
    auth = p.get("user", "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"
