"""The pseudonym key: from the deployment's secret, or a local file made once.

Pure (no Dagster): the read API turns a user's own id into their pseudonym with it, and
`PrivacyResource` reads the same key inside runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from analytics_assets.privacy.pii import pseudonymize_id
from analytics_assets.settings import Settings

LOCAL_KEY_FILE = "pseudonym.key"
# Fewer characters than this and the key can be guessed: pseudonyms of a source's sequential
# user ids under it are anyone's to compute (`" "` was accepted).
MIN_KEY_CHARACTERS = 16
# The examples' placeholders (`change-me…`): public, so no key.
PLACEHOLDER = "change-me"


def load_pseudonym_key(configured: str | None, key_file: str | None) -> bytes:
    """The configured key, else the one in `key_file` (created with a random key, readable
    by its owner only, the first time and never overwritten)."""
    if configured:
        # Used as given, spaces included: trimming now would change every pseudonym of a
        # deployment whose secret ends with a line break.
        if len(configured.strip()) < MIN_KEY_CHARACTERS or configured.strip().lower().startswith(
            PLACEHOLDER
        ):
            raise ValueError(
                f"PRIVACY_PSEUDONYM_KEY is a placeholder or has fewer than {MIN_KEY_CHARACTERS} "
                "characters besides spaces: pseudonyms under it could be computed by anyone. "
                "Use a random key (`openssl rand -hex 32`)."
            )
        return configured.encode()
    if key_file:
        path = Path(key_file)
        if not path.exists():
            _create_key_file(path)
        key = path.read_text().strip().encode()
        if not key:
            # Pseudonyms under an empty key are anyone's to compute.
            raise ValueError(
                f"The pseudonym key file {path} is empty. Restore it from a backup (a new key "
                "changes every pseudonym), or delete it to have a new key created."
            )
        return key
    raise ValueError("Pseudonyms need a key: set PRIVACY_PSEUDONYM_KEY (or pseudonym_key_file).")


def _create_key_file(path: Path) -> None:
    """A new random key at `path`, readable by its owner only. Written in full to a file of
    its own first, then linked into place: another process reads either no file or the
    whole key, never an empty file (a crash or a race between create and write), and of two
    processes creating it at once, one key wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            pass  # another process created it first: its key is the key
        except OSError:
            # A filesystem without hard links: create it in place, exclusively (and here
            # too, a process that created it first wins).
            with contextlib.suppress(FileExistsError):
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(partial.read_text())
    finally:
        partial.unlink(missing_ok=True)


def local_key_file(settings: Settings) -> str | None:
    """Where the local deployment keeps its key when no PRIVACY_PSEUDONYM_KEY is set; prod
    has none (its key must be configured)."""
    if settings.privacy_pseudonym_key is not None or settings.deployment == "prod":
        return None
    return str(settings.local_path(LOCAL_KEY_FILE))


def pseudonymizer(settings: Settings) -> Callable[[str], str]:
    """user id -> pseudonym under the deployment's key, the key read once."""
    configured = settings.privacy_pseudonym_key
    key = load_pseudonym_key(
        configured.get_secret_value() if configured else None, local_key_file(settings)
    )
    return lambda user_id: pseudonymize_id(user_id, key)
