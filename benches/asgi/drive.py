"""The client of `instructions.sh` and `collector_instructions.sh`: N requests to the bench app.

    python drive.py PORT N [CONNECTIONS]

Waits (up to 300 s: a server under valgrind starts slowly) until the app answers on
127.0.0.1:PORT, then sends `GET /users/<i % 100>` for i < N over CONNECTIONS keep-alive
connections (default 1; wrk's -c32 interleaves requests the same way), each waiting for its
response before the next. The first request, the probe, counts as request 0.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time


def wait_for_server(port: int) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/users/0")
            c.getresponse().read()
            c.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("the server did not start")
            time.sleep(0.5)


def main() -> None:
    port, n = int(sys.argv[1]), int(sys.argv[2])
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    wait_for_server(port)

    def client(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for i in range(1 + k, n, conns):
            c.request("GET", f"/users/{i % 100}")
            c.getresponse().read()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
