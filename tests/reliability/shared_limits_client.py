"""One client process of the shared-limits tests: sends ``--requests`` distinct requests to ``--base-url`` through
the process-wide limiter of that endpoint, starting at wall time ``--start-at``, and prints one JSON line:
its first and last times and the result kinds.

    python shared_limits_client.py --base-url URL --backend local|redis|process --location DIR|URL ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

from pref_assets.clients.limiter import shared_limiter
from pref_assets.clients.llm import ChatClient, ChatRequest
from pref_assets.clients.shared_limits import StoreSpec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--location", default="")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--lease-ttl", type=float, default=6.0)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--tag", default="")
    return parser


async def _send(args: argparse.Namespace) -> dict[str, object]:
    spec = StoreSpec(args.backend, args.location, args.lease_ttl)
    limiter = shared_limiter(args.base_url, max_concurrency=args.max_concurrency, rpm=args.rpm, tpm=None, store=spec)
    requests = [
        ChatRequest("fake-model", ({"role": "user", "content": f"{args.tag} question {i}"},), {"max_tokens": 8})
        for i in range(args.requests)
    ]
    async with ChatClient(args.base_url, max_concurrency=args.max_concurrency, limiter=limiter) as client:
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        started = time.time()
        results = await client.complete_many(requests)
        ended = time.time()
    if limiter.shared is not None:
        limiter.shared.flush()
    kinds = Counter("ok" if r.ok else str(r.error_kind) for r in results)
    return {"started": started, "ended": ended, "kinds": dict(kinds), "rate_limited": limiter.rate_limited}


def main() -> None:
    """Send the requests and print the JSON line."""
    print(json.dumps(asyncio.run(_send(_parser().parse_args()))), flush=True)


if __name__ == "__main__":
    main()
