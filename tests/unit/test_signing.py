"""Signed steps: only the coordinator's key makes a worker run a step."""

from __future__ import annotations

import pytest

from agentic import names
from agentic.bus.signing import SignatureError, Signer, Verifier, parse_keys
from agentic.errors import ConfigError
from agentic.store import open_store

PAYLOAD = b'{"run_id": "r", "step_id": "s"}'


def test_a_payload_signed_by_a_trusted_key_verifies_and_names_its_signer() -> None:
    signer = Signer.generate()
    verifier = Verifier([signer.public_key])
    assert verifier.verify(PAYLOAD, signer.headers(PAYLOAD)) == signer.public_key


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unsigned", "not signed by a coordinator"),
        ("altered", "bad signature"),
        ("untrusted", "not a trusted key"),
        ("garbled", "bad signature"),
        ("malformed signer", "not a trusted key"),
    ],
)
def test_a_payload_that_is_not_signed_by_a_trusted_key_is_refused(case: str, message: str) -> None:
    signer, stranger = Signer.generate(), Signer.generate()
    verifier = Verifier([signer.public_key])
    headers = {
        "unsigned": {},
        "altered": signer.headers(b"something else"),
        "untrusted": stranger.headers(PAYLOAD),
        "garbled": {**signer.headers(PAYLOAD), names.SIGNATURE_HEADER: "AAAA"},
        "malformed signer": {**signer.headers(PAYLOAD), names.SIGNER_HEADER: "not-a-key"},
    }[case]
    with pytest.raises(SignatureError, match=message):
        verifier.verify(PAYLOAD, headers)


def test_a_signer_refuses_a_file_that_holds_no_seed(tmp_path) -> None:
    path = tmp_path / "seed"
    path.write_text("not a seed\n")
    with pytest.raises(ConfigError, match="not an nkey seed"):
        Signer.from_file(path)


def test_trusted_keys_must_be_public_nkeys() -> None:
    key = Signer.generate().public_key
    assert parse_keys(f" {key} , ") == {key}
    with pytest.raises(ConfigError, match="AGENTIC_STEP_TRUSTED_KEYS"):
        parse_keys("SNOTAPUBLICKEY")


def test_workers_trust_the_keys_coordinators_publish_in_the_store_and_learn_new_ones() -> None:
    store = open_store("memory://signing-keys")
    first, second = Signer.generate(), Signer.generate()
    store.publish_signer(first.public_key, {"coordinator_id": "a"})
    verifier = Verifier(store.signers)
    assert verifier.verify(PAYLOAD, first.headers(PAYLOAD)) == first.public_key

    # A new leader publishes its key before it signs anything: a worker looks again at once.
    store.publish_signer(second.public_key, {"coordinator_id": "b"})
    assert verifier.verify(PAYLOAD, second.headers(PAYLOAD)) == second.public_key

    store.forget_signer(first.public_key)
    assert store.signers() == [second.public_key]
    assert store.signer_info(second.public_key) == {"coordinator_id": "b"}


def test_an_unknown_signer_makes_the_store_be_read_again_at_most_once_a_second() -> None:
    reads = []

    def keys() -> list[str]:
        reads.append(1)
        return []

    verifier = Verifier(keys)
    stranger = Signer.generate()
    for _ in range(5):
        with pytest.raises(SignatureError):
            verifier.verify(PAYLOAD, stranger.headers(PAYLOAD))
    assert len(reads) == 1
    with pytest.raises(SignatureError):  # another unknown signer: looked up at once
        verifier.verify(PAYLOAD, Signer.generate().headers(PAYLOAD))
    assert len(reads) == 2
