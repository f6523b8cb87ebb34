"""Peer secrets from the environment, or from files it names.

PEER_ID is the peer's auth_username upper-cased, every character outside A-Z and 0-9 turned into
``_``: ``connector-b`` reads ``BTP_PEER_CONNECTOR_B_SECRET``. Four variables per peer:

- ``BTP_PEER_{PEER_ID}_SECRET``: the secret itself;
- ``BTP_PEER_{PEER_ID}_SECRET_FILE``: a file holding it (Docker and Kubernetes secrets), its
  content with one trailing newline stripped;
- ``..._SECRET_PREVIOUS`` and ``..._SECRET_PREVIOUS_FILE``: a second secret also accepted from the
  peer during a rotation, never presented when we dial it.

An empty value counts as unset, so an empty token can never authenticate; a variable and its
``_FILE`` both set is a configuration error (we refuse to guess which one is meant). Files are
read each time a secret is needed (an auth attempt, a dial), never cached: a secret replaced in
place takes effect without a restart. The four name families end differently (``_SECRET``,
``_SECRET_FILE``, ``_SECRET_PREVIOUS``, ``_SECRET_PREVIOUS_FILE``), so no variable of one peer can
be read as another peer's: ``BTP_PEER_ALICE_SECRET_PREVIOUS`` is alice's previous secret,
``BTP_PEER_ALICE_PREVIOUS_SECRET`` the secret of the peer ``alice-previous``.

What this module says about a secret (``status``, ``problems``, ``missing_reason``) names
variables, paths and OS errors, never a byte of the content.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from connector.domain.accounts import canonical_peer_id
from connector.domain.auth import is_valid_peer_id
from connector.domain.errors import ConfigurationError
from connector.domain.secret import Secret

_PREFIX = "BTP_PEER_"
_SUFFIX = "_SECRET"
_FILE = "_FILE"
_PREVIOUS = "_PREVIOUS"
_NOT_ALNUM = re.compile(r"[^A-Z0-9]")

#: The largest secret file read: a path like /dev/zero must not eat memory.
MAX_SECRET_FILE_SIZE = 64 * 1024


def secret_variable(peer_id: str) -> str:
    """The environment variable that holds ``peer_id``'s secret."""
    return f"{_PREFIX}{_NOT_ALNUM.sub('_', peer_id.upper())}{_SUFFIX}"


@dataclass(frozen=True, slots=True)
class _Lookup:
    """One secret (current or previous) as found: the secret, or why there is none."""

    secret: Secret | None
    #: For ``status``: "set", "set from file PATH", "MISSING", or the problem.
    shown: str
    #: Why the secret is unusable though something is configured (None: usable, or not set).
    problem: str | None = None
    #: The file named does not exist: for a previous secret, no problem (see ``problems``).
    absent: bool = False


class EnvSecretStore:
    """Reads the ``BTP_PEER_{PEER_ID}_SECRET*`` variables from ``environ`` (``os.environ`` by
    default), and the files they name."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    @classmethod
    def checked(cls, environ: Mapping[str, str] | None = None) -> EnvSecretStore:
        """The store, after refusing an environment with a variable and its ``_FILE`` both set
        (for any peer, listed or not: the environment does not change while we run)."""
        store = cls(environ)
        conflicts = store.conflicts()
        if conflicts:
            raise ConfigurationError("\n".join(conflicts))
        return store

    # --- the SecretStore port -----------------------------------------------------------------

    def secret_for(self, peer_id: str) -> Secret | None:
        """The secret we present to the peer (the current one)."""
        return self._lookup(secret_variable(peer_id)).secret

    def accepted(self, peer_id: str) -> tuple[Secret, ...]:
        """Every secret accepted from the peer: the current one, then the previous one. The
        previous one only along with a current one: it is the tail of a rotation, not a way in
        for a peer that has no secret."""
        variable = secret_variable(peer_id)
        current = self._lookup(variable).secret
        if current is None:
            return ()
        previous = self._lookup(variable + _PREVIOUS).secret
        return (current,) if previous is None else (current, previous)

    def missing_reason(self, peer_id: str) -> str:
        """Why ``secret_for`` gives ``None``: safe for an error message or a log line."""
        variable = secret_variable(peer_id)
        return self._lookup(variable).problem or f"{variable} is not set"

    # --- for --check-config and the start-up log ----------------------------------------------

    def status(self, peer_id: str) -> str:
        """One phrase for ``--check-config``: ``BTP_PEER_A_SECRET: set``, ``...: set from file
        PATH``, ``...: MISSING``, the problem, and ``+ previous`` when one is set."""
        variable = secret_variable(peer_id)
        current = self._lookup(variable)
        shown = current.shown if current.problem else f"{variable}: {current.shown}"
        previous = self._lookup(variable + _PREVIOUS)
        if previous.absent:
            shown += f", no previous (no file {self._environ.get(variable + _PREVIOUS + _FILE)})"
        elif previous.problem is not None:
            shown += f", + previous: {previous.problem}"
        elif previous.secret is not None:
            shown += " + previous" + previous.shown.removeprefix("set")
        return shown

    def problems(self, peer_id: str) -> list[str]:
        """What keeps the peer's secrets from working, current and previous: empty when all is
        well. A previous secret is optional, and so is its file: ``_SECRET_PREVIOUS_FILE`` may
        stay set between rotations, naming a file that exists only during one (a key added to
        and then removed from a mounted Kubernetes secret)."""
        variable = secret_variable(peer_id)
        current = self._lookup(variable)
        out = [] if current.secret is not None else [current.problem or f"{variable} is not set"]
        previous = self._lookup(variable + _PREVIOUS)
        return out if previous.problem is None or previous.absent else [*out, previous.problem]

    def conflicts(self) -> list[str]:
        """Every variable set along with its ``_FILE``, as error messages (names only)."""
        return sorted(
            f"{name[: -len(_FILE)]} and {name} are both set: set one of them"
            for name, value in self._environ.items()
            if name.startswith(_PREFIX)
            and name.endswith((_SUFFIX + _FILE, _SUFFIX + _PREVIOUS + _FILE))
            and value
            and self._environ.get(name[: -len(_FILE)])
        )

    def configured_peers(self) -> list[str]:
        """The PEER_ID part of every non-empty ``_SECRET`` or ``_SECRET_FILE`` variable, for the
        start-up log line (files are not read here). ``_PREVIOUS`` variables name no peer."""
        peers = set()
        for name, value in self._environ.items():
            if not value or not name.startswith(_PREFIX):
                continue
            for suffix in (_SUFFIX, _SUFFIX + _FILE):
                if name.endswith(suffix) and len(name) > len(_PREFIX) + len(suffix):
                    peers.add(name[len(_PREFIX) : -len(suffix)])
        return sorted(peers)

    def peer_ids(self) -> list[str]:
        """``BTP_PEER_CONNECTOR_B_SECRET`` is ``connector-b``'s. A variable no valid id reads
        (``BTP_PEER_alice_SECRET``: ids read upper-case names) names no peer."""
        ids = {canonical_peer_id(name) for name in self.configured_peers()}
        return sorted(i for i in ids if is_valid_peer_id(i) and self.secret_for(i) is not None)

    def __repr__(self) -> str:
        return f"EnvSecretStore({len(self.configured_peers())} peers)"

    # --- reading --------------------------------------------------------------------------------

    def _lookup(self, variable: str) -> _Lookup:
        value = self._environ.get(variable)
        path = self._environ.get(variable + _FILE)
        if value and path:
            both = f"{variable} and {variable}{_FILE} are both set: set one of them"
            return _Lookup(None, both, both)
        if value:
            # surrogateescape: the bytes the environment really holds, even when not UTF-8
            # (a strict encode would fail with a message quoting the offending character).
            return _Lookup(Secret(value.encode("utf-8", "surrogateescape")), "set")
        if not path:
            return _Lookup(None, "MISSING")
        where = f"{variable}{_FILE}={path}"
        try:
            content = _read_capped(path)
        except OSError as exc:
            problem = f"{where}: cannot read the file: {exc.strerror or type(exc).__name__}"
            return _Lookup(None, problem, problem, absent=isinstance(exc, FileNotFoundError))
        if content is None:
            problem = f"{where}: the file is larger than {MAX_SECRET_FILE_SIZE} bytes"
            return _Lookup(None, problem, problem)
        if content.endswith(b"\n"):  # what `echo` and most editors leave
            content = content[:-1]
        if not content:
            problem = f"{where}: the file is empty"
            return _Lookup(None, problem, problem)
        return _Lookup(Secret(content), f"set from file {path}")


def _read_capped(path: str) -> bytes | None:
    """The file's bytes, or ``None`` when it holds more than ``MAX_SECRET_FILE_SIZE``.

    Non-blocking, so a FIFO with no writer fails (EAGAIN) instead of hanging the event loop.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SECRET_FILE_SIZE:
            chunk = os.read(fd, MAX_SECRET_FILE_SIZE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return None if size > MAX_SECRET_FILE_SIZE else b"".join(chunks)
