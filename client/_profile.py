"""Where a client's endpoints, access key and TLS trust come from, as the AWS tools do it.

Each setting is taken from the first place that has it: the caller's arguments, then environment
variables, then a profile in the config file (INI, `~/.maillage/config` or `$MAILLAGE_CONFIG_FILE`):

    [default]
    endpoint = 10.0.1.1:7000,10.0.2.1:7000
    access_key_id = MK...
    secret_access_key = ...
    trust_dir = /etc/maillage/client      # ca.pem, client.pem, client.key of the cluster

    [profile admin]                       # `--profile admin` or MAILLAGE_PROFILE=admin
    ...

Every node port is TLS-only and every request is signed with an access key, so a profile without
them is an error that says which setting is missing and how to give it. The secret never appears in
a repr, a log line or an error message.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maillage.client._exceptions import CredentialsError

__all__ = ["ENV", "Credentials", "Profile", "resolve_profile", "write_profile"]

ENV = {
    "endpoint": "MAILLAGE_ENDPOINT",
    "access_key_id": "MAILLAGE_ACCESS_KEY_ID",
    "secret_access_key": "MAILLAGE_SECRET_ACCESS_KEY",
    "trust_dir": "MAILLAGE_TRUST_DIR",
    "profile": "MAILLAGE_PROFILE",
    "config_file": "MAILLAGE_CONFIG_FILE",
}
DEFAULT_CONFIG = Path("~/.maillage/config")
TRUST_FILES = ("ca.pem", "client.pem", "client.key")


@dataclass(frozen=True)
class Credentials:
    """An access key: its id (public) and its secret (never shown)."""

    key_id: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.key_id or not self.secret:
            raise CredentialsError("an access key needs both its id and its secret")


@dataclass(frozen=True)
class Profile:
    """Everything a client needs to reach a mesh: where, as whom, trusting which CA."""

    endpoints: tuple[str, ...]
    credentials: Credentials
    trust_dir: Path
    name: str = "default"

    def trust_files(self) -> tuple[bytes, bytes, bytes]:
        """(CA certificate, client certificate, client key), PEM."""
        try:
            ca, cert, key = (Path(self.trust_dir, f).read_bytes() for f in TRUST_FILES)
        except OSError as exc:
            raise CredentialsError(f"trust dir {self.trust_dir}: {exc.strerror}: {exc.filename} "
                                   f"(it must hold {', '.join(TRUST_FILES)} of the cluster)") from None
        return ca, cert, key


def _split(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def _profile_section(config_file: Path, name: str) -> Mapping[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config_file, encoding="utf-8")
    except configparser.Error as exc:
        raise CredentialsError(f"config file {config_file} does not parse: {exc}") from None
    for section in (name, f"profile {name}"):
        if parser.has_section(section):
            return dict(parser.items(section))
    return {}


def resolve_profile(endpoints: str | Sequence[str] | None = None, *, key_id: str | None = None,
                    secret: str | None = None, trust_dir: str | os.PathLike[str] | None = None,
                    profile: str | None = None, config_file: str | os.PathLike[str] | None = None,
                    environ: Mapping[str, str] = os.environ) -> Profile:
    """The profile a client uses: arguments first, then environment variables, then the config file."""
    name = profile or environ.get(ENV["profile"]) or "default"
    path = Path(config_file or environ.get(ENV["config_file"]) or DEFAULT_CONFIG).expanduser()
    stored = _profile_section(path, name) if path.is_file() else {}
    if profile and not stored and (profile != "default"):
        raise CredentialsError(f"no profile {profile!r} in {path}")

    def pick(setting: str, given: object) -> str:
        if given:
            return str(given)
        return environ.get(ENV[setting]) or stored.get(setting, "")

    if isinstance(endpoints, str):
        found = _split(endpoints)
    elif endpoints:
        found = tuple(endpoints)
    else:
        found = _split(pick("endpoint", None))
    missing = []
    if not found:
        missing.append(f"an endpoint (argument, ${ENV['endpoint']} or `endpoint` in the profile)")
    kid, sec, trust = pick("access_key_id", key_id), pick("secret_access_key", secret), pick("trust_dir", trust_dir)
    if not kid or not sec:
        missing.append(f"an access key (${ENV['access_key_id']} and ${ENV['secret_access_key']}, or "
                       "`access_key_id` and `secret_access_key` in the profile)")
    if not trust:
        missing.append(f"the cluster's trust dir with {', '.join(TRUST_FILES)} (${ENV['trust_dir']} or "
                       "`trust_dir` in the profile)")
    if missing:
        where = f"profile {name!r} of {path}" if stored else f"no profile {name!r} in {path}"
        raise CredentialsError("missing " + "; ".join(missing) + f" ({where})")
    return Profile(found, Credentials(kid, sec), Path(trust).expanduser(), name)


def write_profile(config_file: str | os.PathLike[str], profile: Profile) -> Path:
    """Add or replace one profile in a config file (created owner-only: it holds a secret)."""
    path = Path(config_file).expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    if path.is_file():
        parser.read(path, encoding="utf-8")
    section = profile.name if profile.name == "default" else f"profile {profile.name}"
    parser[section] = {"endpoint": ",".join(profile.endpoints), "access_key_id": profile.credentials.key_id,
                       "secret_access_key": profile.credentials.secret, "trust_dir": str(profile.trust_dir)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        parser.write(f)
    return path
