"""The CLI's per-user state file: the session and the inbox cursor, so ``listen`` resumes.

Stored as JSON, by default at ``$XDG_CONFIG_HOME/tidings/<username>.json`` (else
``~/.config/tidings/<username>.json``), written atomically and readable by its owner only
(it holds an access token).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from ._errors import TidingsError
from ._models import Session, as_object, get_id, get_int, get_str

__all__ = ["ChatState", "StateError", "config_dir", "default_state_path", "find_state_path"]


class StateError(TidingsError):
    """The state file is missing, unreadable or ambiguous."""


@dataclass(slots=True)
class ChatState:
    url: str
    username: str
    user_id: str
    device_id: str
    access_token: str
    expires_at: int
    chat_url: str
    cursor: int = 0
    # The CA the server's certificate was verified against at login (None: the system's).
    ca_file: str | None = None

    @property
    def session(self) -> Session:
        return Session(
            self.access_token, self.expires_at, self.user_id, self.device_id, self.chat_url
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise StateError(f"no state at {path}: run `tidings client login` first") from exc
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {path}: {exc}") from exc
        try:
            obj = as_object(raw, "state")
            return cls(
                url=get_str(obj, "url"),
                username=get_str(obj, "username"),
                user_id=get_id(obj, "user_id"),
                device_id=get_id(obj, "device_id"),
                access_token=get_str(obj, "access_token"),
                expires_at=get_int(obj, "expires_at"),
                chat_url=get_str(obj, "chat_url"),
                cursor=get_int(obj, "cursor") if "cursor" in obj else 0,
                ca_file=get_str(obj, "ca_file") if obj.get("ca_file") is not None else None,
            )
        except TidingsError as exc:
            raise StateError(f"{path} is not a Tidings state file: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename), mode 0600."""
        data = asdict(self)
        data["cursor"] = str(self.cursor)  # a sequence, sent as a decimal string everywhere
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(data, file, indent=2)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tidings"


def default_state_path(username: str) -> Path:
    return config_dir() / f"{username}.json"


def find_state_path(state: Path | None, user: str | None) -> Path:
    """``--state`` if given, else ``--user``'s default file, else the only state file."""
    if state is not None:
        return state
    if user is not None:
        return default_state_path(user)
    candidates = sorted(config_dir().glob("*.json"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise StateError(f"no state in {config_dir()}: run `tidings client login` first")
    names = ", ".join(c.stem for c in candidates)
    raise StateError(f"several users are logged in ({names}): pick one with --user or --state")
