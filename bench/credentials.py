"""What sealed credentials cost a cycle: minting, sealing at the frontend, opening at the factory.

Run from the repository root:

    .venv/bin/python bench/credentials.py [requests]

A frontend seals one credential per (group, entry) request ad every cycle;
a factory opens every request addressed to it. This times both for
`requests` ads (default 2,000, a big factory's request count in
bench/factory_synthetic.py), plus minting one pilot token per entry. No
I/O is timed. Each figure is the best of 3 runs (perf_counter).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from updraft import envelope, protocol
from updraft.factory.credentials import open_credential
from updraft.factory.model import Credential
from updraft.tokens import SigningKey, derive_jwt_key, mint

NOW = 1_800_000_000.0


def best_of_3(run: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(count: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    key = SigningKey("POOL", derive_jwt_key(b"bench pool password", "POOL"))
    ring = envelope.Keyring(X25519PrivateKey.generate(), created_at=NOW)
    public = ring.current.public_key()
    token = mint(key, "pilot@vo", "vo", 86400, NOW)
    frontends = [f"vo{i % 20}" for i in range(count)]

    minting = best_of_3(lambda: [mint(key, "pilot@vo", "vo", 86400, NOW) for _ in range(count)])
    sealed: list[str] = []
    sealing = best_of_3(
        lambda: sealed.__setitem__(
            slice(None),
            [
                envelope.seal(
                    {"identity": f"{fe}@vo", "token": token}, public, envelope.Binding("fac1", fe, "main", f"ce{i}")
                )
                for i, fe in enumerate(frontends)
            ],
        )
    )
    ads = [
        protocol.PublishedRequest(fe, "main", "fac1", f"ce{i}", 1, 1, "idle", 0, f"{fe}@vo", sealed=s)
        for i, (fe, s) in enumerate(zip(frontends, sealed, strict=True))
    ]
    openers = ring.openers(NOW)
    results: list[tuple[Credential | None, str | None]] = []
    opening = best_of_3(lambda: results.__setitem__(slice(None), [open_credential(ad, openers, "fac1") for ad in ads]))
    assert all(credential is not None for credential, _ in results)
    print(f"{count} request ads, one core, best of 3:")
    print(f"  mint a pilot token  {minting / count * 1e6:8.1f} us each  {minting:6.3f} s for all")
    print(f"  seal (frontend)     {sealing / count * 1e6:8.1f} us each  {sealing:6.3f} s for all")
    print(f"  open (factory)      {opening / count * 1e6:8.1f} us each  {opening:6.3f} s for all")
    print(f"  sealed text         {len(sealed[0])} characters per ad")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
