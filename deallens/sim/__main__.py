"""`python -m deallens.sim`: serve the AlphaVantage, NewsAPI and OpenAI stand-ins until Ctrl-C.

Prints one line per provider with its base URL (port 0, the default, picks free ports).
Point the app at them with ALPHAVANTAGE_BASE_URL, NEWSAPI_BASE_URL and OPENAI_BASE_URL
(OpenAI's SDK wants the "/v1" suffix).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack

from deallens.sim import alphavantage, newsapi, openai
from deallens.sim.serve import LoopbackOnlyError, ensure_loopback, serve_asgi


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deallens.sim",
        description="Serve the AlphaVantage, NewsAPI and OpenAI stand-ins on loopback until Ctrl-C.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every simulated data stream (default 0)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    for provider in ("alphavantage", "newsapi", "openai"):
        parser.add_argument(f"--{provider}-port", type=int, default=0, metavar="P", help="port (default 0: a free one)")
    parser.add_argument("--premium", action="store_true", help="answer AlphaVantage premium endpoints")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    apps = (
        ("alphavantage", alphavantage.make_app(seed=args.seed, premium=args.premium), args.alphavantage_port, ""),
        ("newsapi", newsapi.make_app(seed=args.seed), args.newsapi_port, ""),
        ("openai", openai.make_app(seed=args.seed), args.openai_port, "/v1"),
    )
    async with AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(serve_asgi(app, host=args.host, port=port)) for _, app, port, _ in apps]
        for (name, _, _, suffix), url in zip(apps, urls):
            print(f"{name} {url}{suffix}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.host = ensure_loopback(args.host)
    except LoopbackOnlyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        print(f"error: {error} (choose another port, or 0 for a free one)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
