"""Signed steps: a worker runs a StepSpec (and obeys a kill notice) only if the coordinator
signed it.

The coordinator signs the exact bytes of each message with an ed25519 key (an nkey seed)
and sends the signature and its public key as headers (``Agentic-Signature``,
``Agentic-Signer``); the message body stays the plain contract. A worker verifies both
against the public keys it trusts, so that a message published by anyone else on the bus,
or altered on its way, is refused before anything runs.

Where the keys come from:

* **Configured** (deploy/, ``agentic up``): the coordinator reads its seed from
  ``AGENTIC_STEP_SIGNING_SEED_FILE``; workers trust the keys in ``AGENTIC_STEP_TRUSTED_KEYS``.
* **By default**: a coordinator that has no seed makes a fresh key pair when it starts and
  publishes the *public* key in the run store (``keys/<public key>.json``); workers that
  have no configured keys trust the keys found there. A publisher on the bus who cannot
  write the run store cannot sign. The seed never leaves the coordinator's memory.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from agentic import names
from agentic.errors import ConfigError

log = logging.getLogger(__name__)

# Public keys a trust list may hold: nkeys of users ('U') or servers ('N').
_KEY_PREFIXES = frozenset({nkeys.PREFIX_BYTE_USER, nkeys.PREFIX_BYTE_SERVER})
# A worker that meets a signer it does not know looks for new keys at once (a coordinator
# publishes its key before it signs anything), and again for that signer at most this often.
REFRESH_EVERY_S = 1.0
# Signers remembered as unknown (a flood of made-up ones forgets the oldest).
MAX_MISSED = 1024


class SignatureError(Exception):
    """A message whose signature is missing, malformed, from an untrusted key, or wrong."""


class Signer:
    """Signs message payloads with one ed25519 key.

    Args:
        seed: An nkey seed (``SN…`` or ``SU…``).
    """

    def __init__(self, seed: bytes) -> None:
        try:
            self._keys = nkeys.from_seed(bytearray(seed.strip()))
            self.public_key = bytes(self._keys.public_key).decode()
        except (nkeys.NkeysError, ValueError) as exc:
            raise ConfigError(f"not an nkey seed: {type(exc).__name__}") from exc

    @classmethod
    def generate(cls) -> Signer:
        """A signer with a fresh key pair."""
        from agentic.bus.auth import new_seed

        return cls(new_seed(nkeys.PREFIX_BYTE_SERVER))

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """The signer whose seed is in ``path`` (``AGENTIC_STEP_SIGNING_SEED_FILE``).

        Raises:
            ConfigError: the file cannot be read or holds no seed.
        """
        try:
            seed = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"AGENTIC_STEP_SIGNING_SEED_FILE: cannot read {path}: {exc}") from exc
        return cls(seed)

    def headers(self, payload: bytes) -> dict[str, str]:
        """The headers that carry ``payload``'s signature."""
        signature = self._keys.sign(payload)
        return {
            names.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            names.SIGNER_HEADER: self.public_key,
        }


def verify_key(public_key: str) -> VerifyKey:
    """The ed25519 key of an nkey public key (``U…`` or ``N…``).

    Raises:
        SignatureError: not a valid public nkey.
    """
    try:
        raw = base64.b32decode(public_key.encode())
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"malformed signer key {public_key[:12]!r}") from exc
    if len(raw) != 35 or raw[0] not in _KEY_PREFIXES:
        raise SignatureError(f"not a public nkey: {public_key[:12]!r}")
    body, checksum = raw[:33], raw[33:]
    if nkeys.crc16(bytearray(body)).to_bytes(2, "little") != checksum:
        raise SignatureError(f"signer key {public_key[:12]!r} fails its checksum")
    return VerifyKey(body[1:])


def parse_keys(value: str | None) -> set[str]:
    """The public keys of a comma-separated ``AGENTIC_STEP_TRUSTED_KEYS``.

    Raises:
        ConfigError: one of them is not a public nkey.
    """
    keys = {k.strip() for k in (value or "").split(",") if k.strip()}
    for key in keys:
        try:
            verify_key(key)
        except SignatureError as exc:
            raise ConfigError(f"AGENTIC_STEP_TRUSTED_KEYS: {exc}") from exc
    return keys


class Verifier:
    """Checks signatures against a set of trusted public keys.

    Args:
        trusted: The keys to trust, or a function that lists them (called again when a
            message names a key not yet known: a new coordinator published its key
            meanwhile; for the same unknown key at most every :data:`REFRESH_EVERY_S`).
    """

    def __init__(self, trusted: Iterable[str] | Callable[[], Iterable[str]]) -> None:
        self._load = trusted if callable(trusted) else None
        self._keys: dict[str, VerifyKey] = {}
        self._missed: OrderedDict[str, float] = OrderedDict()
        if not callable(trusted):
            self._remember(trusted)

    def verify(self, payload: bytes, headers: Mapping[str, str] | None) -> str:
        """Check the signature of ``payload``; returns the signer's public key.

        Raises:
            SignatureError: unsigned, malformed, signed by an untrusted key, or altered.
        """
        headers = headers or {}
        signature = headers.get(names.SIGNATURE_HEADER)
        signer = headers.get(names.SIGNER_HEADER)
        if not signature or not signer:
            raise SignatureError("the message is not signed by a coordinator")
        key = self._key(signer)
        try:
            key.verify(payload, base64.b64decode(signature, validate=True))
        except (BadSignatureError, binascii.Error, ValueError) as exc:
            raise SignatureError(f"bad signature by {signer[:12]}…") from exc
        return signer

    def _key(self, signer: str) -> VerifyKey:
        key = self._keys.get(signer)
        if key is None and self._load is not None:
            now = time.monotonic()
            missed = self._missed.get(signer)
            if missed is None or now - missed >= REFRESH_EVERY_S:
                self._remember(self._load())
                key = self._keys.get(signer)
                if key is None:
                    self._missed[signer] = now
                    self._missed.move_to_end(signer)
                    while len(self._missed) > MAX_MISSED:
                        self._missed.popitem(last=False)
        if key is None:
            raise SignatureError(f"signed by {signer[:12]}…, which is not a trusted key")
        return key

    def _remember(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key in self._keys:
                continue
            try:
                self._keys[key] = verify_key(key)
            except SignatureError as exc:
                log.warning("ignoring a trusted key: %s", exc)
