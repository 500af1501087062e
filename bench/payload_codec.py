"""What the payload codec costs: encode + decode of typical payloads with encryption on,
against the same converter without it, measured in the same run.

    .venv/bin/python bench/payload_codec.py [--rounds 200]

Prints, per payload size, microseconds per encode+decode round trip for each converter (best
of five interleaved runs) and their ratio, and the bytes the encryption adds (nonce, tag, key id, the wrapped metadata).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel  # noqa: E402

from codec import data_converter  # noqa: E402
from deallens.config import load_settings  # noqa: E402
from temporal_client import DATA_CONVERTER  # noqa: E402


class Sample(BaseModel):
    symbols: list[str]
    note: str


async def round_trips(converter: object, value: Sample, rounds: int) -> tuple[float, int]:
    encode, decode = converter.encode, converter.decode  # type: ignore[attr-defined]
    (payload,) = await encode([value])
    start = time.perf_counter()
    for _ in range(rounds):
        (payload,) = await encode([value])
        await decode([payload], [Sample])
    return (time.perf_counter() - start) / rounds * 1e6, payload.ByteSize()


async def main(rounds: int) -> None:
    keys = f"k2:{base64.b64encode(os.urandom(32)).decode()},k1:{base64.b64encode(os.urandom(32)).decode()}"
    encrypted = data_converter(load_settings(_env_file=None, temporal_codec_keys=keys))
    print(f"{'payload':>10} {'clear µs':>10} {'encrypted µs':>13} {'ratio':>6} {'bytes added':>12}")
    for size in (1_000, 64_000, 1_000_000):
        value = Sample(symbols=[f"S{i:04d}" for i in range(20)], note="x" * size)
        # Interleaved, best of five each: the machine is shared, the minimum is the cost.
        clear, enc = [], []
        for _ in range(5):
            clear.append(await round_trips(DATA_CONVERTER, value, rounds))
            enc.append(await round_trips(encrypted, value, rounds))
        (clear_us, clear_bytes), (enc_us, enc_bytes) = min(clear), min(enc)
        print(f"{size:>10,} {clear_us:>10.1f} {enc_us:>13.1f} {enc_us / clear_us:>6.2f} {enc_bytes - clear_bytes:>12}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    asyncio.run(main(parser.parse_args().rounds))
