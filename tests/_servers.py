"""Throwaway servers for the integration tier: a PostgreSQL cluster and a Mosquitto broker.

Both start from the binaries Debian installs, in a private temporary directory, on a
free loopback port, and are removed at the end of the session.  A missing binary is
an error with the install command, never a skip.

PostgreSQL refuses to run as root, and CI runs as root: then initdb/pg_ctl run as the
``postgres`` system user through ``runuser`` and the data directory is handed to it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_INSTALL_HINT = "install postgresql: apt-get install postgresql"
MOSQUITTO_INSTALL_HINT = "install mosquitto: apt-get install mosquitto"
MOSQUITTO_BIN = "/usr/sbin/mosquitto"


class ServerError(RuntimeError):
    """A test server could not be found, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int,
    *,
    timeout: float = 15.0,
    what: str = "server",
    log: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``.

    With ``proc``, give up as soon as that process has exited (it will never listen).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    tail = _tail(log) if log else ""
    raise ServerError(
        f"{what} did not accept connections on 127.0.0.1:{port} within {timeout:g} s{tail}"
    )


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- " + str(log) + " ---\n" + "\n".join(text)


# --- PostgreSQL -----------------------------------------------------------------------------
def postgres_bindir() -> Path:
    """The newest installed ``/usr/lib/postgresql/<major>/bin`` with initdb and pg_ctl."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.search(r"/postgresql/(\d+)/bin$", d)
        if m and os.access(Path(d, "initdb"), os.X_OK) and os.access(Path(d, "pg_ctl"), os.X_OK):
            found.append((int(m.group(1)), Path(d)))
    if not found:
        raise ServerError(
            f"no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql; {PG_INSTALL_HINT}"
        )
    return max(found)[1]


def postgres_version() -> str:
    """``PostgreSQL 15.x`` of the installed server binaries."""
    out = subprocess.run(
        [str(postgres_bindir() / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().replace("postgres (PostgreSQL)", "PostgreSQL")


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster: ``start()``, use ``dsn(db)``, ``stop()``."""

    bindir: Path = field(default_factory=postgres_bindir)
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="askug-pg-")))
    user: str = "postgres"
    #: extra server settings (``name → value``), after the defaults below (they win)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise ServerError(
                    "running as root needs `runuser` (util-linux) to start PostgreSQL as user postgres"
                )
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, check=False)
        if res.returncode != 0:
            raise ServerError(
                f"{Path(args[0]).name} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}"
                + _tail(self.log)
            )
        return res

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerError(
                    f"running as root but there is no `postgres` system user; {PG_INSTALL_HINT}"
                ) from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            # The temp dir's parents must be traversable by postgres (mkdtemp gives 0700).
            self.root.chmod(0o755)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        opts = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
                "-c TimeZone=UTC",
                *[f"-c {name}={value}" for name, value in self.settings.items()],
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )
        wait_for_port(self.port, what="PostgreSQL", log=self.log)
        return self

    def stop(self) -> None:
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# --- Mosquitto ------------------------------------------------------------------------------
def mosquitto_version() -> str:
    if not os.access(MOSQUITTO_BIN, os.X_OK):
        raise ServerError(f"{MOSQUITTO_BIN} not found; {MOSQUITTO_INSTALL_HINT}")
    # `mosquitto -h` prints its version on the first line and exits non-zero.
    out = subprocess.run([MOSQUITTO_BIN, "-h"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "mosquitto (unknown version)"


@dataclass
class MosquittoServer:
    """A private Mosquitto broker on 127.0.0.1 (tests only).

    By default anonymous access is allowed.  For the transport tests pass
    ``password_file``/``acl_file`` (then anonymous access is off, as in the shipped
    ``ingest/mosquitto/mosquitto.conf``).  Persistence is always on: ``kill()`` ends the
    broker abruptly (SIGKILL, like a crash) or with SIGTERM (clean: it saves its
    database), and ``start()`` again brings it back on the same port and data folder, so
    persistent sessions and queued messages survive as far as Mosquitto saved them.
    ``autosave_interval`` is in seconds (Mosquitto saves its in-memory database then).
    """

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="askug-mqtt-")))
    proc: subprocess.Popen[bytes] | None = None
    password_file: Path | None = None
    acl_file: Path | None = None
    autosave_interval: int = 1800
    extra_config: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config_lines(self) -> list[str]:
        """The ``mosquitto.conf`` this broker runs with."""
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.root}/",
            f"autosave_interval {self.autosave_interval}",
            # Queue without limit for offline persistent sessions (the ingest service
            # while it restarts), and let a subscriber have many unacknowledged QoS 1
            # messages in flight so it can commit them in large batches.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.password_file is None and self.acl_file is None:
            lines.append("allow_anonymous true")
        else:
            lines.append("allow_anonymous false")
            if self.password_file is not None:
                lines.append(f"password_file {self.password_file}")
            if self.acl_file is not None:
                lines.append(f"acl_file {self.acl_file}")
        if os.geteuid() == 0:
            # As root mosquitto drops privileges to `mosquitto`, which cannot write our
            # temp dir; staying root is fine for a loopback-only test broker.
            lines.append("user root")
        lines.extend(self.extra_config)
        return lines

    def start(self) -> MosquittoServer:
        """Start (or restart, after :meth:`kill`) the broker on its port and data folder."""
        if not os.access(MOSQUITTO_BIN, os.X_OK):
            raise ServerError(f"{MOSQUITTO_BIN} not found; {MOSQUITTO_INSTALL_HINT}")
        if self.running:
            return self
        conf = self.root / "mosquitto.conf"
        conf.write_text("\n".join(self.config_lines()) + "\n")
        deadline = time.monotonic() + 10
        while True:
            self.proc = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                wait_for_port(self.port, what="Mosquitto", log=self.log, proc=self.proc)
                break
            except ServerError:
                # Right after a kill the port may still be held for a moment: retry.
                self._reap()
                if time.monotonic() > deadline:
                    shutil.rmtree(self.root, ignore_errors=True)
                    raise
                time.sleep(0.2)
        if self.proc.poll() is not None:
            raise ServerError(f"mosquitto exited with {self.proc.returncode}" + _tail(self.log))
        return self

    def kill(self, *, clean: bool = False) -> None:
        """End the broker but keep its data folder: SIGKILL (a crash) or SIGTERM (``clean``)."""
        if self.proc is not None and self.proc.poll() is None:
            if clean:
                self.proc.terminate()
            else:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> None:
        try:
            self.kill(clean=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
