"""AES-GCM for Temporal payloads, with key ids so that keys can be rotated.

Temporal stores every workflow input, activity argument and result in its history, on its
own database (or Temporal Cloud). With TEMPORAL_CODEC_KEYS set, the client and the worker
encrypt them before they leave the process; only processes holding a key read them back.

Keys come from the environment as `id:base64`, comma-separated, active key first:

    TEMPORAL_CODEC_KEYS="k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>"

New payloads are encrypted with the first key; every listed key decrypts. Rotation is
therefore: put a new key in front, roll the workers and clients, and drop the old key only
once no history still needs it (retention, then the workflows that run longer).

The key id travels in the payload's metadata (never the key) and is bound to the
ciphertext as associated data: moving a ciphertext under another id fails authentication.
This module knows bytes only; the Temporal-facing codec (codec.py) wraps the serialized
Payload.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# The metadata encoding that marks an encrypted payload (the Temporal samples' convention).
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CodecError(Exception):
    """A payload could not be encrypted or decrypted. The message is one line naming the key id."""


class CodecKeyError(CodecError):
    """The payload names a key id this process was not given."""


class CodecIntegrityError(CodecError):
    """The ciphertext does not authenticate under its key: tampered, truncated, or a wrong key."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id:base64,...` -> {id: key}, in order (first = active). Raises ValueError naming the
    offending key id (never the key material)."""
    keys: dict[str, bytes] = {}
    for position, item in enumerate(part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"entry {position + 1} is not id:base64 (ids are 1-64 of A-Z a-z 0-9 . _ -)")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} is listed twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"key {key_id!r} is {len(key)} bytes, expected {KEY_BYTES} (AES-256)")
        keys[key_id] = key
    if not keys:
        raise ValueError("no key given (expected id:base64[,id:base64...])")
    return keys


def new_key() -> str:
    """A fresh base64 key, for operators (`python codec.py new-key`)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode()


@dataclass(frozen=True)
class PayloadCipher:
    """Encrypts with the active key, decrypts with any known one."""

    keys: dict[str, bytes]

    @classmethod
    def from_spec(cls, spec: str) -> PayloadCipher:
        return cls(parse_keys(spec))

    @property
    def active_key_id(self) -> str:
        return next(iter(self.keys))

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """(key id, nonce + ciphertext + tag). A random 96-bit nonce per payload: with at most
        billions of payloads per key the collision chance stays negligible; rotate beyond."""
        key_id = self.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + AESGCM(self.keys[key_id]).encrypt(nonce, plaintext, key_id.encode())

    def decrypt(self, key_id: str, blob: bytes) -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            known = ", ".join(self.keys)
            raise CodecKeyError(
                f"payload encrypted with key id {key_id!r}, which TEMPORAL_CODEC_KEYS does not hold "
                f"(it holds {known}): add that key back to TEMPORAL_CODEC_KEYS"
            )
        if len(blob) < NONCE_BYTES + 16:
            raise CodecIntegrityError(f"payload under key id {key_id!r} is truncated ({len(blob)} bytes)")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise CodecIntegrityError(
                f"payload under key id {key_id!r} failed authentication: tampered with, or key {key_id!r} "
                "is not the key it was encrypted with"
            ) from None
