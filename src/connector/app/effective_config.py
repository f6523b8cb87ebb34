"""The effective configuration: the environment plus the file, as start-up builds it.

One function, ``load_effective``, reads both and is used by start-up, ``--check-config`` and
reload, so the three can never disagree about what is valid. Every problem is collected before
anything is refused: the environment's, then the file's (all of them, see ``load_config``), then
what needs both (a peer we dial has no secret). A configured peer without a secret is a warning,
not an error, everywhere: it cannot log in until its secret exists (a secret file may appear
later), while everyone else can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.tls import client_context, server_context
from connector.app.config import ConnectorConfig, load_config
from connector.app.settings import (
    OVERRIDES,
    VARIABLES,
    EnvironmentProblems,
    Settings,
    effective_file,
    runtime_config,
)
from connector.domain.errors import ConfigurationError
from connector.domain.ports import SecretStore

#: Exit codes, shared by start-up and ``--check-config`` (README, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # something outside the configuration: a port taken, a database unreachable
EXIT_INVALID = 2  # the configuration: the file, the environment, a peer's secret


class InvalidConfiguration(ConfigurationError):
    """Every problem found, one line each; nothing was started."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Effective:
    settings: Settings
    #: The file it came from, and the file as read (None: open mode, no file).
    path: Path | None
    file: ConnectorConfig | None
    #: The file with the environment applied: what runs.
    config: ConnectorConfig
    warnings: tuple[str, ...] = ()
    #: Problems only the file and the environment together show (``secret_problems``); with
    #: ``load_effective(..., keep_going=True)`` they are here instead of raised.
    errors: tuple[str, ...] = ()

    def runtime(self) -> dict[str, Any]:
        """What the container is built from."""
        return runtime_config(self.settings, self.file)

    #: Each setting the environment set: the variable that set it, as spelled there.
    sources: Mapping[str, str] = field(default_factory=dict)

    def overridden(self) -> dict[str, str]:
        """File keys the environment beats: key -> the variable that beats it."""
        return {key: self.sources[name] for name, key in OVERRIDES if name in self.sources}


def load_effective(
    environ: Mapping[str, str],
    path: Path | None,
    secrets: SecretStore,
    *,
    keep_going: bool = False,
) -> Effective:
    """The configuration start-up would run with, or ``InvalidConfiguration`` listing every
    problem. ``path`` (``--config``) beats ``CONNECTOR_CONFIG``. ``keep_going``: a file and an
    environment that are valid each on their own are returned with the problems of the two
    together in ``errors`` (``--check-config`` shows the configuration and them)."""
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.from_environment(environ)
    except EnvironmentProblems as exc:
        problems.extend(f"environment: {problem}" for problem in exc.problems)
    if path is None:
        path = settings.config if settings is not None else _path(environ)
    file: ConnectorConfig | None = None
    if path is not None:
        try:
            file = load_config(path)
        except ConfigurationError as exc:
            problems.extend(str(exc).splitlines())
    if problems or settings is None:
        raise InvalidConfiguration(problems)
    config = effective_file(settings, file)
    errors, warnings = secret_problems(config, secrets) if file is not None else ([], [])
    if isinstance(secrets, EnvSecretStore):  # a variable and its _FILE: which one is meant?
        errors = [*secrets.conflicts(), *errors]
    errors.extend(tls_problems(config))
    if errors and not keep_going:
        raise InvalidConfiguration(errors)
    sources = {VARIABLES[name]: name for name in VARIABLES if environ.get(name)}
    return Effective(settings, path, file, config, tuple(warnings), tuple(errors), sources)


def _path(environ: Mapping[str, str]) -> Path | None:
    value = environ.get("CONNECTOR_CONFIG", "")
    return Path(value) if value else None


def tls_problems(config: ConnectorConfig) -> list[str]:
    """The server's certificate and key, and each peer's CA file, loaded as start-up loads them
    (never shown: a problem names the key and the file)."""
    problems = []
    tls = config.btp_server.tls
    if tls is not None:
        try:
            server_context(tls.cert_file, tls.key_file, tls.client_ca_file)
        except ConfigurationError as exc:
            problems.append(str(exc))
    for index, peer in enumerate(config.peers):
        if peer.url and peer.tls_ca_file:
            try:
                client_context(peer.tls_ca_file, key=f"peers.{index}.tls_ca_file")
            except ConfigurationError as exc:
                problems.append(str(exc))
    return problems


def secret_problems(config: ConnectorConfig, secrets: SecretStore) -> tuple[list[str], list[str]]:
    """A peer we dial needs its secret (an error); any other peer without one cannot log in
    until it has one (a warning), and so does a previous secret that cannot be read. A variable
    set along with its ``_FILE`` is reported once, by ``load_effective``."""
    env = secrets if isinstance(secrets, EnvSecretStore) else None
    conflicts = set(env.conflicts()) if env is not None else set()
    errors, warnings = [], []
    for peer in config.peers:
        missing = secrets.secret_for(peer.id) is None
        # the current secret's problem (first, when it is missing), then a previous one's
        if env is not None:
            found = env.problems(peer.id)
        else:
            found = [secrets.missing_reason(peer.id)] if missing else []
        current, previous = (found[0], found[1:]) if missing and found else (None, found)
        if current is not None and current not in conflicts:
            if peer.url:
                errors.append(f"peer {peer.id!r}: {current} (needed to dial {peer.url})")
            else:
                warnings.append(f"peer {peer.id!r}: {current}: it cannot log in yet")
        warnings.extend(f"peer {peer.id!r}: {p}" for p in previous if p not in conflicts)
    return errors, warnings
