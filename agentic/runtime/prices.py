"""Shipped prices of common hosted models, for ``cost_usd`` when a provider sets no ``price``.

USD per million tokens (input, output), from the vendors' public price lists as of
2026-12. They apply only to ``openai`` and ``anthropic`` providers that call the vendor's
own API (no base URL): the same model name behind another server (a proxy, a local
server) may cost anything, and then only the provider's own ``price`` counts. A model
not listed here has no cost (``cost_usd`` stays empty), never a guessed one. Set
``price`` on a provider to override or to add a model.
"""

from __future__ import annotations

from agentic.contracts import AgentProvider, Price

SHIPPED: dict[str, dict[str, tuple[float, float]]] = {
    "openai": {
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "o3-mini": (1.10, 4.40),
        "o4-mini": (1.10, 4.40),
    },
    "anthropic": {
        "claude-3-5-haiku-latest": (0.80, 4.00),
        "claude-3-5-sonnet-latest": (3.00, 15.00),
        "claude-3-7-sonnet-latest": (3.00, 15.00),
        "claude-sonnet-4-0": (3.00, 15.00),
        "claude-opus-4-0": (15.00, 75.00),
    },
}

_VENDOR_URL_FIELD = {"openai": "openai_base_url", "anthropic": "anthropic_base_url"}


def price_of(provider: AgentProvider) -> Price | None:
    """What ``provider``'s tokens cost: its own ``price``, else the shipped price of its
    model when it calls the vendor's API, else None (unknown)."""
    if provider.price is not None:
        return provider.price
    field = _VENDOR_URL_FIELD.get(provider.type)
    if field is None or getattr(provider, field) or provider.base_url or not provider.model:
        return None
    shipped = SHIPPED[provider.type].get(provider.model)
    if shipped is None:
        return None
    return Price(input_per_million=shipped[0], output_per_million=shipped[1])
