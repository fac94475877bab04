"""The bottom of the Graph client's httpx stack: HTTP/1.1 over aiohttp.

msgraph-sdk's request adapter and its middleware (authentication, retry with `Retry-After`,
redirects, telemetry) stay as they are; only the last hop, which sends the request and reads
the answer, is aiohttp's. Its C parser and asyncio's TLS read a 0.9 MB delta page with about a
third of the CPU httpcore needs (measured over the simulator), and a delta round is hundreds of
such pages. Bodies come back undecoded: httpx decodes `Content-Encoding` as it would for its
own transport.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx
from yarl import URL


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Created outside any event loop; its session is opened on the first request."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout") or {}
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            async with self._open().request(
                request.method,
                URL(str(request.url), encoded=True),  # sent as given, never re-quoted
                headers=headers,
                data=await request.aread() or None,
                allow_redirects=False,  # the SDK's RedirectHandler decides
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            ) as response:
                content = await response.read()
                version = response.version or aiohttp.HttpVersion11  # None before a status line
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS certificate
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.NetworkError(str(exc), request=request) from exc
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=httpx.ByteStream(content),
            extensions={
                "http_version": b"HTTP/%d.%d" % (version.major, version.minor),
                "reason_phrase": (response.reason or "").encode("latin-1"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._verify),
                auto_decompress=False,  # httpx decodes Content-Encoding
                cookie_jar=aiohttp.DummyCookieJar(),  # Graph sets none; keep requests stateless
            )
        return self._session
