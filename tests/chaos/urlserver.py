"""The staticPodURL of a chaos run: serves <dir>/body, failing as <dir>/mode says.

    python -m tests.chaos.urlserver DIR PORT      (the engine starts it in the agent's network namespace)

Modes: ok (200 with the body), error (500), garbage (200 with bytes that are no manifest), slow (answers
after 15 s, past the agent's 10 s timeout). Stopping the process is the fifth failure: refused.
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GARBAGE = b"kind: Pod\nmetadata: {name: [unclosed\n\x00\xff"


def serve(directory: Path, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            mode = (directory / "mode").read_text().strip() if (directory / "mode").exists() else "ok"
            body = (directory / "body").read_bytes() if (directory / "body").exists() else b""
            if mode == "slow":
                time.sleep(15)
            status, payload = (500, b"chaos: server error\n") if mode == "error" else (200, body)
            if mode == "garbage":
                payload = GARBAGE
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
