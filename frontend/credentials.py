"""The frontend's side of pilot credentials: a token per entry, sealed to the entry's factory.

Each cycle the frontend holds one pilot token per entry it asks pilots
for, minted from the VO pool's signing key and replaced when less than
``refresh_seconds`` of it is left. Into every request ad goes that token
with the frontend's own identity, sealed to the key the factory publishes
(`updraft.envelope`), so only that factory can read it, and only in this
frontend's request for that group and entry.

`tokens_due` and `seal_requests` are pure; `TokenBook` holds the tokens
between cycles and reads the signing key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from updraft import envelope, protocol
from updraft.errors import SealError
from updraft.frontend.config import FrontendConfig, PilotTokens
from updraft.tokens import TokenClaims, load_signing_key, mint, needs_refresh, read_claims

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FactoryKey:
    """The key a factory advertises for sealing, as read (and checked) from its global ad."""

    factory: str
    key_id: str
    public: str


@dataclass(frozen=True)
class HeldToken:
    token: str = field(repr=False)
    claims: TokenClaims


def tokens_due(held: Mapping[str, HeldToken], entries: Iterable[str], now: float, refresh_seconds: int) -> list[str]:
    """The entries whose token is missing or too close to its end."""
    return sorted(e for e in set(entries) if needs_refresh(held[e].claims if e in held else None, now, refresh_seconds))


class TokenBook:
    """The pilot tokens this frontend holds, one per entry (``entry@factory``), minted when due."""

    def __init__(self, settings: PilotTokens) -> None:
        self.settings = settings
        self.key = load_signing_key(settings.signing_key_file)
        self.held: dict[str, HeldToken] = {}

    def tokens(self, entries: Iterable[str], now: float) -> dict[str, str]:
        """A valid token for each of `entries`; tokens of entries no longer asked for are dropped."""
        wanted = set(entries)
        self.held = {e: t for e, t in self.held.items() if e in wanted}
        for entry in tokens_due(self.held, wanted, now, self.settings.refresh_seconds):
            token = mint(
                self.key, self.settings.identity, self.settings.trust_domain, self.settings.lifetime_seconds, now
            )
            self.held[entry] = HeldToken(token, read_claims(token))
            log.info("pilot token minted for %s (valid %d s)", entry, self.settings.lifetime_seconds)
        return {e: t.token for e, t in self.held.items()}


def parse_factory_key(ad: Mapping[str, Any], trusted: Mapping[str, str]) -> tuple[FactoryKey | None, str | None]:
    """The factory's sealing key, or None and why it is not used (untrusted sender, malformed key)."""
    factory = ad.get(protocol.E_FACTORY)
    if not isinstance(factory, str) or factory not in trusted:
        return None, None
    if ad.get(protocol.IDENTITY) != trusted[factory]:
        return None, (
            f"factory ad {factory!r} came from {str(ad.get(protocol.IDENTITY))[:80]!r}, "
            f"factory {factory} is trusted only as {trusted[factory]!r}"
        )
    public, kid = ad.get(protocol.F_PUBLIC_KEY), ad.get(protocol.F_KEY_ID)
    if not isinstance(public, str) or not isinstance(kid, str):
        return None, f"factory {factory} advertises no credential key ({protocol.F_PUBLIC_KEY}, {protocol.F_KEY_ID})"
    try:
        envelope.parse_public_key(public, kid)
    except SealError as err:
        return None, f"factory {factory}: {err}"
    return FactoryKey(factory, kid, public), None


def seal_requests(
    ads: list[dict[str, Any]], tokens: Mapping[str, str], keys: Mapping[str, FactoryKey], config: FrontendConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every request ad with its sealed credential; a factory with no usable key gets ads without one
    (it will refuse them, and the problem says why)."""
    sealed, problems = [], set()
    for ad in ads:
        factory, entry = ad[protocol.R_FACTORY], protocol.entry_ad_name(ad[protocol.R_ENTRY], ad[protocol.R_FACTORY])
        key, token = keys.get(factory), tokens.get(entry)
        if key is None:
            problems.add(f"factory {factory} advertises no credential key: its requests carry no pilot token")
            sealed.append(ad)
            continue
        if token is None:
            sealed.append(ad)
            continue
        public = envelope.parse_public_key(key.public, key.key_id)
        payload = {"identity": config.identity or "", "token": token}
        binding = envelope.Binding(factory, config.name, ad[protocol.R_GROUP], ad[protocol.R_ENTRY])
        sealed.append({**ad, protocol.R_CREDENTIAL: envelope.seal(payload, public, binding)})
    return sealed, sorted(problems)


def token_book(config: FrontendConfig) -> TokenBook | None:
    """The pilot tokens' holder, when the config mints tokens; reads the signing key (TokenError if it cannot)."""
    return TokenBook(config.pilot_tokens) if config.pilot_tokens is not None else None
