"""The payload codec of every client, worker and replayer, and the codec server for the Web UI.

Two jobs on the way out, one on the way in:

* encrypt (when TEMPORAL_CODEC_KEYS is set): each Payload is serialized whole (metadata and
  data) and sealed with AES-GCM (deallens/security/payload_cipher.py), so that the history
  on Temporal's database holds `binary/encrypted` blobs and a key id, never the values;
* refuse oversize payloads early: Temporal rejects a payload field over 2 MiB (the server's
  blob size limit). Without this the SDK core refuses it with a retryable
  `PayloadsTooLarge`, and the next attempt builds the same oversize result again; here it
  fails once, non-retryable, with one line naming the activity or workflow and the size,
  measured after encryption (what the server would see);
* decrypt on the way in, passing unencrypted payloads through unchanged: histories recorded
  before the codec was switched on (tests/histories/) still decode and replay.

The codec server (codec_server.py) runs this codec for the Web UI and the CLI. It lives at
the top level with the temporalio imports; the crypto is in deallens/security.
`python codec.py new-key [ID]` prints a new TEMPORAL_CODEC_KEYS entry.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

from deallens.config import Settings
from deallens.security.payload_cipher import ENCRYPTED_ENCODING, KEY_ID_METADATA, CodecError, PayloadCipher, new_key

# Temporal's default (dynamic config limit.blobSize.error): the figure the SDK core checks, so
# the guard refuses exactly what the server would refuse, only earlier. (From 512 KiB, the
# warning size, the SDK core already logs a warning of its own.)
PAYLOAD_ERROR_BYTES = 2 * 1024 * 1024
PAYLOAD_TOO_LARGE = "PayloadTooLarge"


def _where(context: SerializationContext | None) -> str:
    """What a payload belongs to, for the one-line error (as much as the SDK tells us)."""
    if isinstance(context, ActivitySerializationContext):
        what = f"activity {context.activity_type or '?'}"
        workflow_type = getattr(context, "workflow_type", None)
        if workflow_type or context.workflow_id:
            what += f" of workflow {workflow_type or '?'} ({context.workflow_id or '?'})"
        return what
    if isinstance(context, WorkflowSerializationContext):
        return f"workflow {context.workflow_id}"
    return "a call (no workflow or activity named by the SDK)"


class DealLensCodec(PayloadCodec, WithSerializationContext):
    """Encrypts (when given a cipher), bounds sizes, and decrypts what it encrypted."""

    def __init__(self, cipher: PayloadCipher | None, context: SerializationContext | None = None) -> None:
        self.cipher = cipher
        self.context = context

    def with_context(self, context: SerializationContext) -> DealLensCodec:
        return DealLensCodec(self.cipher, context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = [self._encrypt(p) for p in payloads] if self.cipher else list(payloads)
        self._check_size(encoded)
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        assert self.cipher is not None
        key_id, blob = self.cipher.encrypt(payload.SerializeToString())
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=blob,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload  # written before the codec was on (or by a codec-less client)
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        if self.cipher is None:
            raise CodecError(
                f"payload is encrypted (key id {key_id!r}) but TEMPORAL_CODEC_KEYS is not set in this process"
            )
        inner = Payload()
        inner.ParseFromString(self.cipher.decrypt(key_id, payload.data))
        return inner

    def _check_size(self, payloads: Sequence[Payload]) -> None:
        # The server limits each payload-bearing field (all arguments of one call together).
        size = sum(p.ByteSize() for p in payloads)
        if size > PAYLOAD_ERROR_BYTES:
            raise ApplicationError(
                f"payload of {_where(self.context)} is {size:,} bytes, over Temporal's {PAYLOAD_ERROR_BYTES:,}-byte "
                "(2 MiB) limit: refused before sending; pass database ids or pages instead",
                type=PAYLOAD_TOO_LARGE,
                non_retryable=True,
            )


def data_converter(settings: Settings | None) -> DataConverter:
    """The pydantic converter with DealLens's codec: encrypting when TEMPORAL_CODEC_KEYS is set.

    With the codec on, failure messages and stack traces move into an encoded (so encrypted)
    attribute as well: they can quote values (a symbol list, a bad input) as much as payloads.
    """
    cipher = settings.payload_cipher() if settings is not None else None
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=DealLensCodec(cipher),
        failure_converter_class=(
            DefaultFailureConverterWithEncodedAttributes if cipher else pydantic_data_converter.failure_converter_class
        ),
    )


def main(argv: list[str]) -> int:
    """`python codec.py new-key [ID]`: a TEMPORAL_CODEC_KEYS entry with a fresh random key."""
    if not argv or argv[0] != "new-key" or len(argv) > 2:
        print("usage: python codec.py new-key [KEY_ID]   (the codec server: python codec_server.py)", file=sys.stderr)
        return 2
    print(f"{argv[1] if len(argv) > 1 else 'k1'}:{new_key()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
