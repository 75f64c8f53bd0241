"""The options of ``runner serve --transport http`` and the operator token, checked before
anything heavy is imported: a mistyped option is answered at once (SPEC §8).

Binding beyond loopback needs TLS or an explicit ``--insecure-behind-proxy`` (tokens must
not cross a network in clear text by accident); the operator token comes from
``RUNNER_ADMIN_TOKEN``, ``--admin-token-file``, or a file generated with mode 0600.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputInvalid


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    admin_token: str = ""
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_behind_proxy: bool = False
    allowed_hosts: tuple[str, ...] = ()

    def check(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputInvalid("--tls-cert and --tls-key go together")
        if not is_loopback(self.host) and self.tls_cert is None and not self.insecure_behind_proxy:
            raise InputInvalid(
                f"--host {self.host}: serving beyond loopback would send bearer tokens in clear text; "
                "give --tls-cert F --tls-key F, or --insecure-behind-proxy when a TLS proxy fronts this server"
            )

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def admin_token(token_file: str | None, state_dir: Path) -> tuple[str, Path | None]:
    """The operator token: ``RUNNER_ADMIN_TOKEN``, else ``--admin-token-file``, else a new one
    written to ``<state_dir>/admin-token`` (mode 0600). Returns it and the file it came from."""
    env = os.environ.get("RUNNER_ADMIN_TOKEN")
    if env:
        if len(env) < 16:
            raise InputInvalid("RUNNER_ADMIN_TOKEN: must be at least 16 characters")
        return env, None
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputInvalid(f"--admin-token-file {token_file}: {exc}") from None
        if len(text) < 16:
            raise InputInvalid(f"--admin-token-file {token_file}: the token must be at least 16 characters")
        return text, path
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "admin-token"
    token = "radm_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return token, path
