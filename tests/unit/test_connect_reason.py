"""Which error a failed NATS connect reports to the user."""

from agentic.bus.connect import _reason


class ServerSaid(Exception):
    """Stands in for nats-py's error built from the server's -ERR line."""


def test_the_servers_own_reason_wins_over_the_socket_reset_that_follows_it() -> None:
    auth = ServerSaid("nats: 'Authorization Violation'")
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert _reason([auth, auth, reset], reset) is auth


def test_socket_errors_are_reported_when_the_server_said_nothing() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert _reason([refused], TimeoutError()) is refused


def test_the_final_exception_is_reported_when_no_error_was_seen() -> None:
    final = TimeoutError("no servers available")
    assert _reason([], final) is final
