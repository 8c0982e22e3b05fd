"""What a step's tokens cost: the provider's own price, else a shipped one, else unknown."""

from __future__ import annotations

from typing import Any

import pytest

from agentic.contracts import AgentProvider, Price
from agentic.runtime.prices import price_of


def provider(**fields: Any) -> AgentProvider:
    values: dict[str, Any] = {"id": "p", "role": "r", "goal": "g", "backstory": "b", **fields}
    return AgentProvider.model_validate(values)


def test_a_price_is_dollars_per_million_tokens_each_way() -> None:
    price = Price(input_per_million=0.15, output_per_million=0.60)
    assert price.cost(1_000_000, 0) == pytest.approx(0.15)
    assert price.cost(21, 5) == pytest.approx((21 * 0.15 + 5 * 0.60) / 1e6)


def test_the_providers_own_price_wins_over_the_shipped_one() -> None:
    own = {"input_per_million": 1.0, "output_per_million": 2.0}
    found = price_of(provider(type="openai", model="gpt-4o-mini", price=own))
    assert found == Price(**own)


def test_a_vendor_model_called_at_the_vendor_has_its_shipped_price() -> None:
    assert price_of(provider(type="openai", model="gpt-4o-mini")) == Price(
        input_per_million=0.15, output_per_million=0.60
    )
    assert price_of(provider(type="anthropic", model="claude-opus-4-0")) is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "openai", "model": "gpt-4o-mini", "openai_base_url": "http://proxy/v1"},
        {"type": "openai", "model": "gpt-4o-mini", "base_url": "http://proxy/v1"},
        {"type": "openai", "model": "a-model-nobody-priced"},
        {"type": "ollama", "model": "llama3.2"},
        {"type": "scripted", "script": {"replies": ["hi"]}},
    ],
)
def test_without_a_price_of_its_own_elsewhere_the_cost_is_unknown_not_zero(
    fields: dict[str, Any],
) -> None:
    assert price_of(provider(**fields)) is None


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Price(input_per_million=-1, output_per_million=0)
