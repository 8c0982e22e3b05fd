"""Secret values are masked wherever agentic writes, logs or prints them."""

from __future__ import annotations

import io
import json
import logging

import pytest

from agentic import redact
from agentic.contracts import StepError, StepResult
from agentic.redact import MASK, RedactingFilter, RedactingStream, Redactor, mask_url
from agentic.store import open_store

SECRET = 'sk-live-"quoted"\\key'


def test_a_secret_is_masked_in_text_and_in_json_as_written() -> None:
    redactor = Redactor([SECRET])
    assert redactor.text(f"bad key {SECRET}!") == f"bad key {MASK}!"
    document = json.dumps({"error": f"echo: {SECRET}"}).encode()
    assert SECRET.encode() not in redactor.bytes(document)
    assert json.loads(redactor.bytes(document)) == {"error": f"echo: {MASK}"}
    assert redactor.data({"a": [f"x{SECRET}"], "n": 1}) == {"a": [f"x{MASK}"], "n": 1}


def test_short_values_are_not_masked_and_longer_secrets_win() -> None:
    redactor = Redactor(["true", "abcdef", "abcdefgh"])
    assert redactor.text("true abcdefgh abcdef") == f"true {MASK} {MASK}"


def test_the_variables_a_catalog_entry_names_are_found_everywhere_they_can_be() -> None:
    entry = {
        "required_env": ["A_ENV"],
        "required_env_any": ["B_ENV"],
        "api_key_env": "C_ENV",
        "streamable_http": {"url": "http://x/${D_ENV}", "headers": {"h": "${E_ENV}"}},
    }
    assert redact.entry_variables(entry) == {"A_ENV", "B_ENV", "C_ENV", "D_ENV", "E_ENV"}
    agent = {
        "api_key_env": "KEY_ENV",
        "openai_base_url": "https://${HOST_ENV}/v1",
        "headers": {"X-Org": "${ORG_ENV}"},
    }
    assert redact.entry_variables(agent) == {"KEY_ENV", "HOST_ENV", "ORG_ENV"}


def test_credentials_in_a_url_are_hidden() -> None:
    assert mask_url("nats://alice:pa55word@host:4222") == "nats://alice:***@host:4222"
    assert mask_url("nats://s3cr3ttoken@host:4222") == "nats://***@host:4222"
    assert mask_url("nats://host:4222") == "nats://host:4222"


def test_log_records_and_their_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    redact.current().add(["log-secret-123456"])
    handler_stream = io.StringIO()
    handler = logging.StreamHandler(handler_stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tests.redact")
    log.addHandler(handler)
    try:
        try:
            raise ValueError("upstream said log-secret-123456")
        except ValueError:
            log.exception("call failed with %s", "log-secret-123456")
    finally:
        log.removeHandler(handler)
    written = handler_stream.getvalue()
    assert "log-secret-123456" not in written
    assert "call failed with ***" in written and "upstream said ***" in written


def test_a_redacting_stream_masks_what_is_printed_and_behaves_like_the_stream() -> None:
    redact.current().add(["print-secret-98765"])
    target = io.StringIO()
    stream = RedactingStream(target)
    print("token print-secret-98765 here", file=stream)
    assert target.getvalue() == "token *** here\n"
    assert stream.getvalue() == target.getvalue()  # delegated


def test_nothing_written_to_the_store_holds_a_protected_value() -> None:
    redact.current().add(["store-secret-424242"])
    store = open_store("memory://redact-store")
    error = StepError(type="X", message="gateway: key store-secret-424242 refused")
    result = StepResult(run_id="r", step_id="s", attempt=1, status="failed", error=error)
    store.write_attempt(result)
    store.commit_attempt(result.model_copy(update={"attempt": 2}))
    store.write_artifact("r", "s", "note.txt", "store-secret-424242")
    assert [a.error.message for a in store.read_attempts("r", "s") if a.error] == [
        "gateway: key *** refused"
    ] * 2
    assert store.read_artifact("r", "s", "note.txt") == MASK.encode()
