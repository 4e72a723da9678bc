"""Credentials kept in their own files (MQTT broker and network camera passwords).

A password file must be a regular file readable by its owner only (mode 0600 or 0400): one
that the group or others can read is refused, as ssh refuses a readable private key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretError(ValueError):
    """A password file that is missing, unreadable, empty or readable by others."""


def read_secret(path: Path, key: str, what: str = "password") -> str:
    """The password in `path` (surrounding whitespace stripped); `key` names the config key and
    `what` the secret (a password, a token) in error messages. The secret itself never
    appears in a message."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretError(f"{key} {path} does not exist; create it holding the {what} (chmod 600)") from None
    except OSError as exc:
        raise SecretError(f"{key} {path} cannot be read ({exc.strerror}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"{key} {path} is not a regular file; point it at a file holding the {what}")
    if st.st_mode & 0o077:
        raise SecretError(
            f"{key} {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path} (and chown it to the service user)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(65536)
    except PermissionError:
        raise SecretError(
            f"{key} {path} is not readable by this user (uid {os.getuid()}); chown it to the service "
            "user and chmod 600"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise SecretError(f"{key} {path} cannot be read ({reason}); write the {what} as plain text") from None
    password = text.strip()
    if not password:
        raise SecretError(f"{key} {path} is empty; write the {what} into it")
    if "\0" in password or "\n" in password:
        raise SecretError(f"{key} {path} holds more than one line; keep only the {what} in it")
    return password
