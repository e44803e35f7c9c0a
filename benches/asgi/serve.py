"""`uvicorn` for the benchmark: the same command line, with TCP_NODELAY on every connection.

With `--workers N > 1`, uvicorn's master binds the listening socket itself
(`Config.bind_socket`: `socket.socket(family=...)`, so its `proto` is 0) and hands it to the
workers. asyncio sets TCP_NODELAY on an accepted connection only when the socket's `proto` is
IPPROTO_TCP, so the workers' connections keep Nagle's algorithm on. h11 writes a response's head
and body in two writes, and the second waits for the client's delayed ACK: every response takes
~40 ms, and wrk -c32 measures 32 / 40 ms = ~720 req/s for any app. (With one worker uvicorn calls
`loop.create_server(host, port)`, whose sockets have proto 6, and TCP_NODELAY is set.)

This launcher re-creates the bound socket with `proto=IPPROTO_TCP` (same file descriptor), so
N workers behave as one worker does. Run it as `python serve.py <uvicorn arguments>`.
"""

from __future__ import annotations

import socket

import uvicorn.config
import uvicorn.main

_bind_socket = uvicorn.config.Config.bind_socket


def _bind_tcp_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


uvicorn.config.Config.bind_socket = _bind_tcp_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    uvicorn.main.main()
