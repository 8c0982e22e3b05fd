"""Agent providers become CrewAI LLMs through CrewAI's own LLM layer, without any network."""

from __future__ import annotations

import importlib.util
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from agentic.errors import ConfigError, MissingEnvError
from tests.factories import agent

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from agentic.runtime.llm import build_llm, llm_arguments
    from agentic.runtime.scripted import ScriptedLLM

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

ENV = {"LLM_KEY": "sk-test-not-a-real-key"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Building an LLM must not open a connection: any attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access while building an LLM: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def build(**fields: Any) -> Any:
    return build_llm(agent("analyst", **fields), step_id="s", topic="t", env=ENV)


def test_openai_uses_the_openai_prefix_and_the_key_from_the_named_variable() -> None:
    llm = build(type="openai", model="gpt-4o-mini", api_key_env="LLM_KEY")
    assert (llm.provider, llm.model) == ("openai", "gpt-4o-mini")
    assert llm.api_key == ENV["LLM_KEY"]
    assert llm.base_url is None


def test_openai_base_url_points_an_openai_compatible_server() -> None:
    llm = build(
        type="openai",
        model="local-model",
        openai_base_url="http://10.0.0.5:8000/v1",
        api_key_env="LLM_KEY",
    )
    assert (llm.provider, llm.model) == ("openai", "local-model")
    assert llm.base_url == "http://10.0.0.5:8000/v1"


def test_ollama_uses_ollama_host_as_its_openai_compatible_endpoint() -> None:
    llm = build(type="ollama", model="llama3.2", ollama_host="http://gpu-box:11434")
    assert (llm.provider, llm.model) == ("ollama", "llama3.2")
    assert llm.base_url == "http://gpu-box:11434/v1"


def test_vllm_is_crewais_hosted_vllm_provider_at_the_base_url() -> None:
    llm = build(type="vllm", model="Qwen/Qwen2.5-7B-Instruct", base_url="http://vllm:8000/v1")
    assert (llm.provider, llm.model) == ("hosted_vllm", "Qwen/Qwen2.5-7B-Instruct")
    assert llm.base_url == "http://vllm:8000/v1"


def test_huggingface_with_a_base_url_is_an_openai_compatible_endpoint() -> None:
    llm = build(
        type="huggingface", model="tgi", base_url="http://tgi:8080/v1", api_key_env="LLM_KEY"
    )
    assert (llm.provider, llm.model, llm.base_url) == ("openai", "tgi", "http://tgi:8080/v1")


def test_huggingface_without_a_base_url_and_litellm_go_through_litellm() -> None:
    hf = llm_arguments(agent("analyst", type="huggingface", model="HuggingFaceH4/zephyr"), ENV)
    assert hf == {"model": "huggingface/HuggingFaceH4/zephyr"}
    proxied = llm_arguments(
        agent("analyst", type="litellm", model="groq/llama3-8b", base_url="http://proxy:4000"), ENV
    )
    assert proxied == {
        "model": "groq/llama3-8b",
        "is_litellm": True,
        "base_url": "http://proxy:4000",
    }


@pytest.mark.skipif(importlib.util.find_spec("litellm") is not None, reason="litellm installed")
def test_a_litellm_provider_without_litellm_installed_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match=r"crewai\[litellm\]"):
        build(type="litellm", model="groq/llama3-8b")


def test_anthropic_maps_to_crewais_anthropic_provider_or_says_what_to_install() -> None:
    fields = {"type": "anthropic", "model": "claude-3-5-haiku-latest", "api_key_env": "LLM_KEY"}
    if importlib.util.find_spec("anthropic") is None:
        with pytest.raises(ConfigError, match=r"crewai\[anthropic\]"):
            build(**fields)
    else:
        llm = build(**fields)
        assert (llm.provider, llm.model) == ("anthropic", "claude-3-5-haiku-latest")


def test_temperature_and_max_tokens_pass_through() -> None:
    llm = build(
        type="openai", model="gpt-4o-mini", api_key_env="LLM_KEY", temperature=0.2, max_tokens=300
    )
    assert (llm.temperature, llm.max_tokens) == (0.2, 300)


def test_a_missing_api_key_variable_is_named_in_the_error() -> None:
    with pytest.raises(MissingEnvError, match="OPENAI_KEY_FOR_TESTS") as caught:
        build(type="openai", model="gpt-4o-mini", api_key_env="OPENAI_KEY_FOR_TESTS")
    assert caught.value.variables == ["OPENAI_KEY_FOR_TESTS"]


def test_a_missing_required_env_variable_is_named_in_the_error() -> None:
    with pytest.raises(MissingEnvError, match="GPU_TOKEN"):
        build(type="ollama", model="llama3.2", required_env=["GPU_TOKEN"])


def test_an_unknown_type_or_a_missing_model_is_a_config_error_naming_the_provider() -> None:
    with pytest.raises(ConfigError, match=r"'analyst'.*unknown type 'gpt'"):
        build(type="gpt", model="x")
    with pytest.raises(ConfigError, match=r"'analyst'.*needs a 'model'"):
        build(type="openai")


def test_a_scripted_provider_becomes_the_offline_scripted_llm() -> None:
    llm = build_llm(
        agent("analyst", type="scripted", script={"replies": ["hi {topic}"]}),
        step_id="s",
        topic="queues",
        attempt=2,
        env={},
    )
    assert isinstance(llm, ScriptedLLM)
    assert llm.attempt == 2
    assert llm.call("Go.").endswith("Final Answer: hi queues")
