"""The plain client the refresh benchmark compares tokdeck with, as the performance issue
measured it: Python's standard library, 16 threads, a new connection for every request,
nothing saved.

    python3 plain_client.py BASE_URL CLIENT_ID CLIENT_SECRET [CA_FILE] < tokens > new_tokens

Reads one refresh token per line, refreshes them all, writes the new ones in the same order,
then the seconds it took (from the first request to the last answer) on the last line.
Answers of 500 (SQLite's "database is locked") and refused connections are asked again after
50 ms, as tokdeck does.
"""

import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse

THREADS = 16


def main():
    base, client_id, secret = sys.argv[1:4]
    ca_file = sys.argv[4] if len(sys.argv) > 4 else None
    url = urllib.parse.urlsplit(base)
    context = ssl.create_default_context(cafile=ca_file) if url.scheme == "https" else None
    tokens = sys.stdin.read().split()
    fresh = [None] * len(tokens)
    next_index = iter(range(len(tokens)))
    lock = threading.Lock()

    def connect():
        if context is not None:
            return http.client.HTTPSConnection(url.hostname, url.port, context=context)
        return http.client.HTTPConnection(url.hostname, url.port)

    def refresh(token):
        body = urllib.parse.urlencode(
            {
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": client_id,
                "client_secret": secret,
            }
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Connection": "close",
        }
        for _ in range(20):
            connection = connect()
            try:
                connection.request("POST", "/oauth/token", body, headers)
                reply = connection.getresponse()
                data = reply.read()
            except ConnectionError:
                time.sleep(0.05)
                continue
            finally:
                connection.close()
            if reply.status == 200:
                return json.loads(data)["refresh_token"]
            if reply.status < 500:
                raise SystemExit(f"refresh failed: {reply.status} {data!r}")
            time.sleep(0.05)
        raise SystemExit("refresh failed 20 times")

    def work():
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            fresh[i] = refresh(tokens[i])

    start = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    if any(token is None for token in fresh):
        raise SystemExit("a worker failed")
    print("\n".join(fresh))
    print(f"{took:.6f}")


if __name__ == "__main__":
    main()
