"""The served page's token: nobody reaches the dashboard (and its stop keys) without it.

Every ``mirdeck serve`` starts with a fresh random token and prints the one URL that carries it.
Opening that URL once trades the token for a cookie and drops it from the address bar; every
later request (the page, its static files, the websocket that drives the ``attach`` process)
must bring the cookie or the token. That covers what loopback alone does not: other users of a
shared machine, a page on another site probing ``localhost`` (a SameSite=Lax cookie is not sent
with its requests, and its websocket's Origin is refused), and DNS rebinding (the cookie belongs
to the address the user opened, not to the attacker's name).

Lax, not Strict: a link to the page clicked in a web mail or chat is a cross-site navigation,
after which a Strict cookie would not come with the redirect. The cookie's name carries the port:
cookies ignore ports, and two servers on one machine would otherwise overwrite each other's.
"""
from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

COOKIE = "mirdeck_serve_token"


def cookie_name(port: int) -> str:
    return f"{COOKIE}_{port}"
TOKEN_ENV = "MIRDECK_SERVE_TOKEN"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """The token of this server: ``MIRDECK_SERVE_TOKEN`` when set (a bookmark that survives restarts)."""
    given = os.environ.get(TOKEN_ENV, "").strip()
    if given:
        if len(given) < 16:
            raise ValueError(f"{TOKEN_ENV} is {len(given)} characters long: give at least 16 (or unset it "
                             "for a random one)")
        return given
    return secrets.token_urlsafe(24)


def _matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _same_origin(request: web.Request, public_netloc: str | None) -> bool:
    """A browser always sends Origin on a websocket; it must be the page's own address (as this
    server sees it, or as ``--public-url`` says browsers reach it through a proxy)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser (a script that has the token anyway)
    netloc = urlsplit(origin).netloc.lower()
    return netloc == (request.host or "").lower() or (public_netloc is not None and netloc == public_netloc.lower())


def refusal(why: str) -> web.Response:
    return web.Response(status=403, content_type="text/plain",
                        text=f"mirdeck serve: {why}. Open the URL that `mirdeck serve` printed "
                             "(it carries ?token=...).\n")


def token_middleware(token: str, *, cookie: str = COOKIE, public_url: str | None = None,
                     secure: bool = False) -> Any:
    public_netloc = urlsplit(public_url).netloc if public_url else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/ws" and not _same_origin(request, public_netloc):  # token or not
            return refusal(f"a websocket from {request.headers.get('Origin')} is not this page's")
        if _matches(request.query.get("token"), token):
            if request.path == "/" and request.method == "GET":
                # Trade the token for the cookie and leave it out of the address bar and history.
                query = {k: v for k, v in request.query.items() if k != "token"}
                # Relative, so that it also holds behind a reverse proxy that serves us under a path.
                location = "./" + (f"?{urlencode(query)}" if query else "")
                response: web.StreamResponse = web.Response(status=302, headers={"Location": location})
            else:
                response = await handler(request)
            if not response.prepared:  # a websocket has sent its headers long before it returns
                response.set_cookie(cookie, token, httponly=True, samesite="Lax", path="/", secure=secure)
            return response
        if not _matches(request.cookies.get(cookie), token):
            return refusal("this page needs its token" if "token" not in request.query else "wrong token")
        return await handler(request)

    return check
