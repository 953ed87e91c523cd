"""A local MLflow tracking server with a PostgreSQL backend store, for a team or a cluster.

    python -m experiments.server start [--dir DIR] [--host 127.0.0.1] [--port 5000]
    python -m experiments.server status [--dir DIR]
    python -m experiments.server stop [--dir DIR]

Everything lives in one folder (default ``mlflow-server/`` at the project root, git-ignored):
a PostgreSQL cluster of its own (``pgdata/``, listening on 127.0.0.1 only), the artifacts the
server stores for its clients (``artifacts/``), the logs and ``server.json`` (ports, pid).
The database password is generated at the first start and kept in ``pgpass`` (mode 0600,
read by libpq through ``PGPASSFILE``): it is never on a command line, in a URI, a log or a
config.  The server binds to 127.0.0.1 unless ``--host`` says otherwise (with a warning).
It runs in its own process group without MLflow's job consumers
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``); ``stop`` ends the whole group.
When run as root, PostgreSQL runs as the ``postgres`` user (``initdb`` refuses root).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from experiments import PROJECT_ROOT

DEFAULT_DIR = PROJECT_ROOT / "mlflow-server"
DATABASE = ROLE = "mlflow"
STATE_FILE = "server.json"


class ServerError(RuntimeError):
    """A server failure, with a message meant to be shown as is."""


@dataclass(frozen=True)
class ServerState:
    """Where a started server listens; saved as ``server.json`` in its folder."""

    host: str
    port: int
    pg_port: int
    pid: int  # the mlflow server's process, leader of its process group

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def load(cls, folder: Path) -> ServerState | None:
        path = folder / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or None if not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_major, reverse=True)
    return versions[0].parent if versions else None


def _major(pg_ctl: Path) -> int:
    name = pg_ctl.parent.parent.name
    return int(name) if name.isdigit() else 0


def _pg_command(program: str, *args: str) -> list[str]:
    """The command line of a PostgreSQL program, as the ``postgres`` user when we are root."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise ServerError("PostgreSQL is not installed: apt-get install postgresql")
    command = [str(bin_dir / program), *args]
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _pg(folder: Path, program: str, *args: str, stdin: str | None = None) -> str:
    """Run a PostgreSQL program (see ``_pg_command``); its output."""
    command = _pg_command(program, *args)
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd="/", check=False
    )
    if done.returncode != 0:
        log = folder / "pgdata" / "postgres.log"
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        tail = f"\nend of {log}:\n{tail}" if tail else ""
        raise ServerError(f"{program} failed: {done.stderr.strip() or done.stdout.strip()}{tail}")
    return done.stdout


def _check_port_free(host: str, port: int, what: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ServerError(f"{what} port {port} on {host} is not free ({e.strerror})") from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _init_cluster(folder: Path, pg_port: int) -> None:
    """A new PostgreSQL cluster in folder/pgdata with a role and database for MLflow."""
    pgdata = folder / "pgdata"
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(pgdata, postgres.pw_uid, postgres.pw_gid)
        reachable = ["runuser", "-u", "postgres", "--", "test", "-w", str(pgdata)]
        if subprocess.run(reachable, cwd="/", check=False).returncode != 0:
            pgdata.rmdir()
            raise ServerError(
                f"PostgreSQL runs as the postgres user, who cannot reach {pgdata}: pass a --dir "
                "whose parent folders it may enter (e.g. chmod o+x on them)"
            )
    pgpass = folder / "pgpass"
    try:
        _pg(folder, "initdb", "-D", str(pgdata), "--auth-local=peer", "--auth-host=scram-sha-256")
        with (pgdata / "postgresql.conf").open("a") as conf:  # loopback TCP; socket in pgdata
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{pgdata}'\n")
        password = secrets.token_urlsafe(24)
        pgpass.touch(mode=0o600)
        pgpass.write_text(f"127.0.0.1:*:{DATABASE}:{ROLE}:{password}\n")
        _start_postgres(folder, pg_port)
        sql = f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}';\n"
        sql += f"CREATE DATABASE {DATABASE} OWNER {ROLE};\n"  # on stdin: not visible in ps
        _pg(folder, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *_socket(folder, pg_port),
            "-f", "-", stdin=sql)  # fmt: skip
    except ServerError:  # no half-made cluster: the next start begins afresh
        if _postgres_running(folder):
            _pg(folder, "pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(pgdata))
        shutil.rmtree(pgdata, ignore_errors=True)
        pgpass.unlink(missing_ok=True)
        raise


def _socket(folder: Path, pg_port: int) -> list[str]:
    return ["-h", str(folder / "pgdata"), "-p", str(pg_port), "-d", "postgres"]


def _postgres_running(folder: Path) -> bool:
    pgdata = folder / "pgdata"
    if postgres_bin() is None or not (pgdata / "postmaster.pid").is_file():
        return False
    command = _pg_command("pg_ctl", "status", "-D", str(pgdata))
    return subprocess.run(command, capture_output=True, cwd="/", check=False).returncode == 0


def _start_postgres(folder: Path, pg_port: int) -> None:
    if _postgres_running(folder):
        return
    _check_port_free("127.0.0.1", pg_port, "PostgreSQL")
    pgdata = folder / "pgdata"
    log = str(pgdata / "postgres.log")
    _pg(folder, "pg_ctl", "start", "-w", "-t", "60", "-D", str(pgdata), "-l", log,
        "-o", f"-p {pg_port}")  # fmt: skip


def store_uri(pg_port: int) -> str:
    """The backend store URI (no password: libpq reads it from ``PGPASSFILE``)."""
    return f"postgresql://{ROLE}@127.0.0.1:{pg_port}/{DATABASE}"


def _healthy(uri: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        pass
    return True


def running(folder: Path) -> ServerState | None:
    """The server started from ``folder``, if it still answers."""
    state = ServerState.load(folder)
    if state is None or not _alive(state.pid) or not _healthy(state.uri):
        return None
    return state


def start(
    folder: Path = DEFAULT_DIR,
    host: str = "127.0.0.1",
    port: int = 5000,
    pg_port: int = 5433,
    workers: int = 2,
    timeout: float = 120,
) -> ServerState:
    """Start PostgreSQL (a new cluster on first use) and the MLflow server; idempotent."""
    folder = folder.absolute()
    state = running(folder)
    if state is not None:
        return state
    stop_server(folder)  # a crashed server's group, if any is left
    folder.mkdir(parents=True, exist_ok=True)
    saved = ServerState.load(folder)
    pg_port = saved.pg_port if saved and _postgres_running(folder) else pg_port
    _check_port_free(host, port, "MLflow server")
    if not (folder / "pgdata" / "PG_VERSION").is_file():
        if (folder / "pgdata").exists():
            raise ServerError(f"{folder / 'pgdata'} exists but is no PostgreSQL cluster")
        _init_cluster(folder, pg_port)
    else:
        _start_postgres(folder, pg_port)
    (folder / "artifacts").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PGPASSFILE": str(folder / "pgpass"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store_uri(pg_port),
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    with (folder / "mlflow.log").open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=folder, start_new_session=True,
        )  # fmt: skip
    state = ServerState(host, port, pg_port, process.pid)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state)))
    deadline = time.monotonic() + timeout
    while not _healthy(state.uri):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(folder)
            tail = (folder / "mlflow.log").read_text(errors="replace")[-3000:]
            raise ServerError(f"the MLflow server did not start; end of its log:\n{tail}")
        time.sleep(0.3)
    return state


def stop_server(folder: Path, sig: signal.Signals = signal.SIGTERM) -> None:
    """End the MLflow server's process group (``SIGKILL`` after 15 s); PostgreSQL stays up."""
    state = ServerState.load(folder.absolute())
    if state is None or not _alive(state.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(state.pid, sig)
        deadline = time.monotonic() + 15
        while _alive(state.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(state.pid, os.WNOHANG)  # reap it if it is our child
            time.sleep(0.1)
        if _alive(state.pid):
            os.killpg(state.pid, signal.SIGKILL)


def stop(folder: Path = DEFAULT_DIR) -> None:
    """Stop the MLflow server, then PostgreSQL (fast shutdown: sessions end, data is kept)."""
    folder = folder.absolute()
    stop_server(folder)
    if _postgres_running(folder):
        _pg(folder, "pg_ctl", "stop", "-w", "-m", "fast", "-D", str(folder / "pgdata"))


@contextlib.contextmanager
def temporary(workers: int = 2) -> Iterator[tuple[Path, ServerState]]:
    """(folder, state) of a server on free loopback ports in a new temporary folder, for tests
    and benchmarks; ``PGPASSFILE`` points at its password meanwhile (so its database can be
    read directly).  Stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="bplab-server-"))
    root.chmod(0o711)  # when we are root, the postgres user must reach its cluster inside
    folder, previous = root / "server", os.environ.get("PGPASSFILE")
    try:
        state = start(folder, port=free_port(), pg_port=free_port(), workers=workers)
        os.environ["PGPASSFILE"] = str(folder / "pgpass")
        yield folder, state
    finally:
        stop(folder)
        if previous is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = previous
        shutil.rmtree(root, ignore_errors=True)


def _warn_if_exposed(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(
            f"warning: the server will accept connections on {host}: anyone who can reach it "
            "can read and write every run (MLflow has no authentication by default)",
            file=sys.stderr,
        )


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a TCP port, 1 to 65535")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: an integer ≥ 1")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    """The command line: start, status or stop the server of a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the server's folder")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=5000, help="the server's port (5000)")
    parser.add_argument("--pg-port", type=_port, default=5433, help="PostgreSQL's port (5433)")
    parser.add_argument("--workers", type=_workers, default=2, help="worker processes (2)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            _warn_if_exposed(args.host)
            state = start(args.dir, args.host, args.port, args.pg_port, args.workers)
            print(f"MLflow server at {state.uri} (PostgreSQL on 127.0.0.1:{state.pg_port}, "
                  f"artifacts in {args.dir.absolute() / 'artifacts'}); send runs to it with:\n"
                  f"  export MLFLOW_TRACKING_URI={state.uri}")  # fmt: skip
        elif args.action == "status":
            found = running(args.dir.absolute())
            if found is None:
                sys.exit(f"no MLflow server is running from {args.dir.absolute()}")
            print(f"MLflow server at {found.uri} (pid {found.pid}), PostgreSQL on port "
                  f"{found.pg_port}")  # fmt: skip
        else:
            stop(args.dir)
            print(f"stopped the MLflow server and PostgreSQL of {args.dir.absolute()}")
    except ServerError as error:
        sys.exit(f"error: {error}")
