"""Who may use the console: loopback by default, a token everywhere else, and forms that
only the console's own pages can submit.

* :func:`check_bind` refuses a non-loopback host without ``AGENTIC_CONSOLE_TOKEN``.
* :class:`Guard` is the ASGI middleware that checks every request, server-sent events
  included: with a token, a request carries it (``Authorization: Bearer``, the
  ``agentic_console`` cookie, or ``?token=`` once, which sets the cookie); without one, the
  ``Host`` header must name a loopback address (a web page cannot rebind a name to
  127.0.0.1 and reach the console through the browser). Comparisons are constant-time.
* Every form carries :attr:`Guard.form_key`, a per-process random value checked on each
  POST: another site can make a browser send a form, never read the key.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import URL, Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentic.errors import ConfigError

COOKIE = "agentic_console"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

SECURITY_HEADERS: dict[str, str] = {
    # Scripts and styles only from the console itself: an output that slipped past escaping
    # still could not run a script.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def is_loopback(host: str) -> bool:
    """True for a loopback address or name (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve ``host`` beyond this machine without a token.

    Raises:
        ConfigError: a non-loopback host and no token (the CLI exits 2).
    """
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host}: the console serves other machines only with a token; set "
            "AGENTIC_CONSOLE_TOKEN (e.g. `openssl rand -hex 32`) and open "
            "http://HOST:PORT/?token=... once (docs/console.md)"
        )
    if token is not None and len(token) < 16:
        raise ConfigError("AGENTIC_CONSOLE_TOKEN: use at least 16 characters")


def same(given: str | None, expected: str) -> bool:
    """Constant-time equality of a presented secret with the expected one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """ASGI middleware: the token (or the loopback ``Host``) on every request.

    Args:
        app: The console.
        token: ``AGENTIC_CONSOLE_TOKEN`` (None: loopback only).
    """

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token
        self.form_key = secrets.token_urlsafe(24)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        raw.append((name.encode(), value.encode()))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.token is None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                return PlainTextResponse("forbidden: this console answers on loopback only", 403)
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if "token" in query:
            return self._login(scope, query)
        if same(_bearer(headers) or _cookie(headers), self.token):
            return None
        return PlainTextResponse(
            "unauthorized: open the console once as /?token=<AGENTIC_CONSOLE_TOKEN>", 401
        )

    def _login(self, scope: Scope, query: dict[str, str]) -> Response:
        """``?token=`` once: the cookie is set and the URL loses its token."""
        assert self.token is not None
        if not same(query.get("token"), self.token):
            return PlainTextResponse("unauthorized: wrong token", 401)
        rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
        target = URL(scope=scope).replace(query=rest)
        response = RedirectResponse(str(target.path) + (f"?{rest}" if rest else ""), 303)
        secure = scope.get("scheme") == "https"
        response.set_cookie(
            COOKIE, self.token, httponly=True, samesite="strict", secure=secure, path="/"
        )
        return response


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _cookie(headers: Headers) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:  # a malformed Cookie header is no credential
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None
