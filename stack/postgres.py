"""PostgreSQL for the cluster topology's Temporal server: Debian's package, our own cluster.

``initdb`` under ``<data_dir>/postgresql/data`` (once), then ``postgres`` in the foreground on
loopback at ``stack.cluster.postgres_port``, password authentication, no Unix socket. PostgreSQL
refuses to run as root, so under root both run as the package's ``postgres`` user.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from settings import ClusterSettings
from stack.component import Component
from stack.errors import StackError, ToolMissingError
from stack.ports import PortClaim, split_host_port

SERVICE_USER = "postgres"
# Temporal opens a pool per service and store (frontend, history, matching, worker; default and
# visibility): well over the default 100 at its default pool sizes.
MAX_CONNECTIONS = 300


def postgres_bin_dir(major: int) -> Path:
    """``/usr/lib/postgresql/<major>/bin`` (Debian's layout), else the tools on PATH."""
    debian = Path(f"/usr/lib/postgresql/{major}/bin")
    if (debian / "postgres").exists():
        return debian
    on_path = shutil.which("postgres")
    if on_path is not None:
        version = subprocess.run(
            [on_path, "--version"], capture_output=True, text=True, check=False
        ).stdout
        if f" {major}." in version:
            return Path(on_path).parent
    raise ToolMissingError(
        f"PostgreSQL {major} server not found (the cluster topology's Temporal store). Install "
        f"it (Debian/Ubuntu: `apt-get install postgresql` or `postgresql-{major}`), or set "
        "ACCORD_STACK__CLUSTER__POSTGRES_MAJOR to the major version you have."
    )


def service_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as: ourselves, or ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ToolMissingError(
            "running as root, PostgreSQL must run as the `postgres` user, which does not exist: "
            "install Debian's postgresql package (it creates the user) or run as another user."
        ) from None


def as_service_user(argv: list[str]) -> list[str]:
    """``argv`` run as the service user (``setpriv`` execs, so the pid stays the server's)."""
    user = service_user()
    if user is None:
        return argv
    return [
        "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", *argv
    ]  # fmt: skip


class PostgresServer(Component):
    name = "postgresql"
    startup_timeout = 60.0
    stop_timeout = 30.0

    @property
    def cluster(self) -> ClusterSettings:
        return self.settings.stack.cluster

    @property
    def host(self) -> str:
        return split_host_port(self.settings.temporal.address)[0]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.cluster.postgres_port}"

    @property
    def home(self) -> Path:
        return self.data_dir / "postgresql"

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    def port_claims(self) -> list[PortClaim]:
        return [
            PortClaim(
                self.name, self.host, self.cluster.postgres_port, "stack.cluster.postgres_port"
            )
        ]

    def prepare(self) -> None:
        bin_dir = postgres_bin_dir(self.cluster.postgres_major)
        if (self.pgdata / "PG_VERSION").exists():
            return
        user = service_user()
        self.home.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _check_reachable(self.home, user)
            os.chown(self.home, user.pw_uid, user.pw_gid)
        password_file = self.home / ".initdb-password"
        password_file.write_text(self.cluster.postgres_password.get_secret_value())
        password_file.chmod(0o600)
        if user is not None:
            os.chown(password_file, user.pw_uid, user.pw_gid)
        try:
            result = subprocess.run(
                as_service_user([
                    str(bin_dir / "initdb"), "-D", str(self.pgdata),
                    "-U", self.cluster.postgres_user, f"--pwfile={password_file}",
                    "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
                ]),
                capture_output=True,
                text=True,
                check=False,
            )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(
                f"initdb in {self.pgdata} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def command(self) -> list[str]:
        bin_dir = postgres_bin_dir(self.cluster.postgres_major)
        return as_service_user([
            str(bin_dir / "postgres"), "-D", str(self.pgdata),
            "-c", f"listen_addresses={self.host}",
            "-c", f"port={self.cluster.postgres_port}",
            "-c", "unix_socket_directories=",
            "-c", f"max_connections={MAX_CONNECTIONS}",
            "-c", "logging_collector=off",
        ])  # fmt: skip

    def cwd(self) -> Path | None:
        return self.home

    async def probe(self) -> None:
        bin_dir = postgres_bin_dir(self.cluster.postgres_major)
        ready = await asyncio.create_subprocess_exec(
            str(bin_dir / "pg_isready"), "-q", "-h", self.host,
            "-p", str(self.cluster.postgres_port), "-U", self.cluster.postgres_user,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        if await ready.wait() != 0:
            raise StackError(f"pg_isready: not accepting connections at {self.address}")


def _check_reachable(folder: Path, user: pwd.struct_passwd) -> None:
    """The service user must be able to enter every folder above its data dir."""
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if parent.stat().st_uid != user.pw_uid and not mode & 0o001:
            raise StackError(
                f"PostgreSQL runs as `{user.pw_name}` (not as root) and cannot enter {parent} "
                f"(mode {oct(mode & 0o777)}): put ACCORD_DATA_DIR under a folder others may "
                f"enter (e.g. `chmod o+x {parent}`), or run the stack as a non-root user."
            )
