"""The embedded nats-server and the connection options, against real servers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import time
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from agentic.bus import (
    EmbeddedNats,
    connect,
    fetch_one,
    nats_server_binary,
    provision,
    publish_step,
    pull_steps,
)
from agentic.bus.messages import decode_spec
from agentic.errors import BusError, ConfigError
from agentic.settings import Settings
from tests.factories import bus_spec
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.nats, pytest.mark.procs]


async def wait_connected(nc: NATS, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not nc.is_connected:
        assert time.monotonic() < deadline, "the client did not reconnect"
        await asyncio.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers signal 0; its state in /proc says it is dead.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(") ", 1)[1].startswith("Z")


# --- the embedded server -----------------------------------------------------------------------


def test_the_server_binary_comes_from_the_installed_package() -> None:
    binary = Path(nats_server_binary())
    assert binary.name == "nats-server" and os.access(binary, os.X_OK)


def test_leaving_the_context_stops_the_server_and_removes_its_temporary_store() -> None:
    with EmbeddedNats() as server:
        pid, store = server.pid, server.store_dir
        assert pid is not None and (store / "jetstream").is_dir()
    assert process_gone(pid)
    assert not store.exists()


def test_a_server_that_cannot_start_is_reported_with_its_own_words() -> None:
    with (
        pytest.raises(BusError, match="exited at start") as caught,
        EmbeddedNats(args=["--no-such-flag"]),
    ):
        pass
    assert "no-such-flag" in str(caught.value)


def test_a_persistent_store_directory_is_kept(tmp_path: Path) -> None:
    with EmbeddedNats.from_settings(Settings(nats_data_dir=str(tmp_path / "js"))) as server:
        assert server.store_dir == tmp_path / "js"
    assert (tmp_path / "js" / "jetstream").is_dir()


async def test_the_server_restarts_on_its_port_with_streams_intact_and_clients_reconnect(
    tmp_path: Path,
) -> None:
    async with EmbeddedNats(store_dir=tmp_path / "js") as server:
        settings = Settings(nats_url=server.url)
        nc = await connect(settings, name="survivor")
        try:
            js = nc.jetstream()
            await provision(js, settings)
            await publish_step(js, bus_spec("default", step_id="before-stop"))
            port, monitor_port = server.port, server.monitor_port

            await asyncio.to_thread(server.restart)  # graceful: SIGTERM
            assert (server.port, server.monitor_port) == (port, monitor_port)
            await wait_connected(nc)
            await publish_step(js, bus_spec("default", step_id="before-crash"))

            await asyncio.to_thread(server.stop, 0)  # a crash: SIGKILL
            await asyncio.to_thread(server.start)
            await wait_connected(nc)
            sub = await pull_steps(js, "default")
            got = [await fetch_one(sub, timeout=5) for _ in range(2)]
        finally:
            await nc.close()
    assert [decode_spec(m).step_id for m in got if m] == ["before-stop", "before-crash"]


# --- connection options ------------------------------------------------------------------------


async def test_a_token_protected_server_accepts_the_token_and_refuses_without_it() -> None:
    async with EmbeddedNats(args=["--auth", "s3cret-token"]) as server:
        nc = await connect(Settings(nats_url=server.url, nats_token="s3cret-token"), name="ok")
        assert nc.is_connected
        await nc.close()
        with pytest.raises(BusError, match="Authorization Violation") as caught:
            await connect(Settings(nats_url=server.url), name="no-token")
    assert server.url in str(caught.value)


async def test_a_user_and_password_are_sent() -> None:
    async with EmbeddedNats(args=["--user", "agent", "--pass", "pw"]) as server:
        settings = Settings(nats_url=server.url, nats_user="agent", nats_password="pw")
        nc = await connect(settings, name="user")
        assert nc.is_connected
        await nc.close()


async def test_a_url_list_skips_a_dead_server(nats_url: str) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    nc = await connect(Settings(nats_url=f"{dead}, {nats_url}"), name="failover")
    try:
        assert nc.connected_url is not None
        assert f"127.0.0.1:{nc.connected_url.port}" in nats_url
    finally:
        await nc.close()


def test_no_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="AGENTIC_NATS_URL"):
        asyncio.run(connect(Settings(nats_url=None), name="nowhere"))


def test_a_missing_credentials_file_names_its_setting(tmp_path: Path) -> None:
    settings = Settings(nats_url="nats://127.0.0.1:4222", nats_creds_file=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="AGENTIC_NATS_CREDS_FILE: no such file"):
        asyncio.run(connect(settings, name="creds"))


async def test_an_nkey_seed_file_authenticates(tmp_path: Path) -> None:
    nkeys = pytest.importorskip("nkeys")
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    (tmp_path / "user.nk").write_bytes(seed)
    config = tmp_path / "nats.conf"
    config.write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    async with EmbeddedNats(config_file=config) as server:
        settings = Settings(nats_url=server.url, nats_nkey_seed_file=str(tmp_path / "user.nk"))
        nc = await connect(settings, name="nkey")
        assert nc.is_connected
        await nc.close()


async def test_mutual_tls_uses_the_ca_and_the_client_certificate(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    args = ["--tlsverify", "--tlscert", files["server.crt"], "--tlskey", files["server.key"]]
    async with EmbeddedNats(args=[*args, "--tlscacert", files["ca.crt"]]) as server:
        settings = Settings(
            nats_url=f"tls://127.0.0.1:{server.port}",
            nats_tls_ca_file=files["ca.crt"],
            nats_tls_cert_file=files["client.crt"],
            nats_tls_key_file=files["client.key"],
        )
        nc = await connect(settings, name="mtls")
        try:
            await nc.flush(timeout=2)
            assert nc.is_connected
        finally:
            await nc.close()


def write_tls_files(directory: Path) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())

    def issue(cn: str, key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name("agentic-test-ca"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256())

    out: dict[str, str] = {}
    for label in ("ca", "server", "client"):
        key = ca_key if label == "ca" else ec.generate_private_key(ec.SECP256R1())
        cert = issue(f"agentic-test-{label}", key, ca=label == "ca")
        for suffix, data in (
            ("crt", cert.public_bytes(serialization.Encoding.PEM)),
            (
                "key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
        ):
            path = directory / f"{label}.{suffix}"
            path.write_bytes(data)
            out[path.name] = str(path)
    return out
