"""Agent providers -> CrewAI LLMs, through CrewAI's own LLM layer.

=============  =====================================================================
``type``       CrewAI LLM
=============  =====================================================================
openai         ``LLM("openai/<model>", base_url=openai_base_url)``
anthropic      ``LLM("anthropic/<model>", base_url=anthropic_base_url)`` (needs the
               ``anthropic`` SDK: ``pip install 'crewai[anthropic]'``)
ollama         ``LLM("ollama/<model>", base_url=ollama_host)`` (CrewAI adds ``/v1``); with
               ``num_ctx``, ``LLM("ollama_chat/<model>", is_litellm=True, num_ctx=…)``:
               Ollama's OpenAI-compatible API cannot set the context window, its native
               chat API (through LiteLLM, ``crewai[litellm]``) can
vllm           ``LLM("hosted_vllm/<model>", base_url=base_url)``
huggingface    with ``base_url`` (TGI, Inference Endpoints: OpenAI-compatible)
               ``LLM("openai/<model>", base_url=base_url)``; without it
               ``LLM("huggingface/<model>")`` through LiteLLM
litellm        ``LLM(<model>, is_litellm=True, base_url=base_url)``: the model string is
               LiteLLM's own (``groq/llama3-8b-8192``); needs ``crewai[litellm]``
scripted       :class:`~agentic.runtime.scripted.ScriptedLLM`, offline
=============  =====================================================================

``api_key`` comes from the environment variable named by ``api_key_env``, read when the LLM
is built (never stored in a spec, a result or the store); ``temperature`` and ``max_tokens``
pass through; ``request_timeout_s``, ``max_retries`` and ``headers`` become the SDK client's
timeout, retries and default headers (``anthropic``: the headers through CrewAI's
``client_params``, and no ``request_timeout_s`` is the SDK's 600 s, where CrewAI would set
none). ``${VAR}`` in a base URL or a header value is expanded here, on the worker; an
``ollama`` provider without a URL uses ``OLLAMA_HOST``. Building an LLM never calls the
network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentic.contracts import AGENT_TYPES, AgentProvider, StepError
from agentic.errors import AgenticError, ConfigError, MissingEnvError
from agentic.redact import mask_url

_PREFIX = {"openai": "openai", "anthropic": "anthropic", "ollama": "ollama", "vllm": "hosted_vllm"}
_BASE_URL_FIELD = {
    "openai": "openai_base_url",
    "anthropic": "anthropic_base_url",
    "ollama": "ollama_host",
}
KNOWN_TYPES = AGENT_TYPES
DEFAULT_MAX_RETRIES = 2
"""Retries of one model request when the provider sets no ``max_retries`` (the SDK's own)."""
ANTHROPIC_DEFAULT_TIMEOUT_S = 600.0
"""Seconds of one ``anthropic`` request when the provider sets no ``request_timeout_s``: the
SDK's own default, which CrewAI replaces with no timeout at all when given none."""


def check_provider_env(provider: AgentProvider, env: Mapping[str, str]) -> None:
    """Fail clearly when the worker lacks a variable the provider declares it needs."""
    needed = list(provider.required_env)
    if provider.api_key_env and provider.api_key_env not in needed:
        needed.append(provider.api_key_env)
    MissingEnvError.check("agent provider", provider.id, needed, env)


def llm_arguments(provider: AgentProvider, env: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of ``crewai.LLM(...)`` for a non-scripted provider.

    Raises:
        ConfigError: unknown ``type`` or no ``model``.
        MissingEnvError: ``api_key_env`` or a ``required_env`` variable is not set.
    """
    kind = provider.type
    if kind not in KNOWN_TYPES or kind == "scripted":
        known = ", ".join(sorted(KNOWN_TYPES - {"scripted"}))
        raise ConfigError(f"agent provider {provider.id!r}: unknown type {kind!r} ({known})")
    if not provider.model:
        raise ConfigError(f"agent provider {provider.id!r}: type {kind!r} needs a 'model'")
    check_provider_env(provider, env)
    args: dict[str, Any] = _model_and_url(provider, env)
    if provider.api_key_env:
        args["api_key"] = env[provider.api_key_env]
    if provider.temperature is not None:
        args["temperature"] = provider.temperature
    if provider.max_tokens is not None:
        args["max_tokens"] = provider.max_tokens
    args.update(_client_arguments(provider, args, env))
    return args


def _client_arguments(
    provider: AgentProvider, args: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """The SDK client's timeout, retries and default headers, as CrewAI's LLM takes them."""
    client: dict[str, Any] = {}
    anthropic = provider.type == "anthropic"
    if provider.request_timeout_s is not None:
        client["timeout"] = provider.request_timeout_s
    elif anthropic:  # CrewAI would hand the SDK timeout=None: no timeout at all
        client["timeout"] = ANTHROPIC_DEFAULT_TIMEOUT_S
    if provider.max_retries is not None:
        client["max_retries"] = provider.max_retries
    elif not _through_litellm(args):  # CrewAI's native clients: say the SDK default aloud
        client["max_retries"] = DEFAULT_MAX_RETRIES
    if provider.headers:
        headers = {
            name: _expand(provider, value, env, f"headers.{name}")
            for name, value in provider.headers.items()
        }
        if anthropic:  # CrewAI's Anthropic provider has no default_headers field (drops
            # them silently); its client_params go to the SDK client as they are
            client["client_params"] = {"default_headers": headers}
        else:
            client["default_headers"] = headers
    return client


def _through_litellm(args: Mapping[str, Any]) -> bool:
    """Whether CrewAI sends these calls through LiteLLM (its own retry settings apply)."""
    return bool(args.get("is_litellm")) or str(args["model"]).startswith("huggingface/")


def describe_endpoint(provider: AgentProvider, env: Mapping[str, str]) -> str | None:
    """``agent provider 'id' (openai gpt-4o-mini at http://host/v1)`` for an error message
    (credentials in the URL masked); None for the offline ``scripted`` provider."""
    if provider.type == "scripted":
        return None
    try:
        url = _model_and_url(provider, env).get("base_url")
    except AgenticError:
        url = None
    where = f" at {mask_url(url)}" if url else ""
    return f"agent provider {provider.id!r} ({provider.type} {provider.model}{where})"


def naming_the_endpoint(
    error: StepError, provider: AgentProvider, env: Mapping[str, str]
) -> StepError:
    """``error`` with the provider and the URL it called in front, unless it names them."""
    where = describe_endpoint(provider, env)
    if where is None or f"agent provider {provider.id!r}" in error.message:
        return error
    return error.model_copy(update={"message": f"{where}: {error.message}"})


def _model_and_url(provider: AgentProvider, env: Mapping[str, str]) -> dict[str, Any]:
    kind, model = provider.type, str(provider.model)
    if kind in _PREFIX:
        field = _BASE_URL_FIELD.get(kind)
        base_url = getattr(provider, field) if field else None
        if kind == "ollama" and not (base_url or provider.base_url):
            base_url = env.get("OLLAMA_HOST") or None  # what the Ollama CLI reads
        args: dict[str, Any] = {"model": f"{_PREFIX[kind]}/{model}"}
        if kind == "ollama" and provider.num_ctx is not None:
            # /v1 ignores num_ctx (ollama/ollama#5356); the native /api/chat applies it
            args = {"model": f"ollama_chat/{model}", "is_litellm": True}
            args["num_ctx"] = provider.num_ctx
        base_url = base_url or provider.base_url
    elif kind == "huggingface":
        base_url = provider.base_url
        args = {"model": f"openai/{model}" if base_url else f"huggingface/{model}"}
    else:  # litellm
        base_url = provider.base_url
        args = {"model": model, "is_litellm": True}
    if base_url:
        args["base_url"] = _expand(provider, base_url, env, "base URL")
    return args


def _expand(provider: AgentProvider, value: str, env: Mapping[str, str], field: str) -> str:
    from agentic.runtime.mcp import expand_env

    return expand_env(value, env, entry_id=provider.id, field=field, kind="agent provider")


def build_llm(
    provider: AgentProvider,
    *,
    step_id: str,
    topic: str,
    inputs: Mapping[str, str] | None = None,
    attempt: int = 1,
    env: Mapping[str, str],
) -> Any:
    """The CrewAI LLM of one step's agent.

    Args:
        provider: The agent provider entry.
        step_id: The step (the scripted provider's ``{step_id}``).
        topic: The run's topic (the scripted provider's ``{topic}``).
        inputs: The run's inputs (scripted placeholders).
        attempt: The attempt number (the scripted provider's failure mode).
        env: Where ``api_key_env`` and ``required_env`` are read (usually ``os.environ``).

    Raises:
        ConfigError: the provider cannot become an LLM here (unknown type, no model,
            missing variable, SDK not installed). Retrying does not help.
    """
    if provider.type == "scripted":
        from agentic.runtime.scripted import build_scripted_llm

        check_provider_env(provider, env)
        return build_scripted_llm(
            provider, step_id=step_id, topic=topic, inputs=inputs, attempt=attempt
        )
    args = llm_arguments(provider, env)
    from crewai import LLM

    try:
        return LLM(**args)
    except ImportError as exc:
        # CrewAI raises ImportError when the provider's SDK (anthropic, litellm) is missing.
        raise ConfigError(
            f"agent provider {provider.id!r} ({provider.type}, {args['model']}): {exc}",
            cause=exc,
        ) from exc
