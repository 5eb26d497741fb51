#!/usr/bin/env python3
"""porthole demo: a pretend training run.

Prints epoch/loss progress every second for about three minutes, and
listens where a real run would offer debugging tools:
  127.0.0.1:5678  a plain TCP server answering "debugpy-demo" (a stand-in
                  for debugpy; try `porthole tunnel EXEC 5678` then `nc`)
  127.0.0.1:6006  a small TensorBoard-like web page
Standard library only.
"""

import http.server
import math
import os
import random
import socketserver
import sys
import threading
import time

EPOCHS = int(os.environ.get("DEMO_EPOCHS", "180"))
progress = {"epoch": 0, "loss": None, "history": []}
_say_lock = threading.Lock()


def say(text, stream=None):
    """Writes one whole line at once: print() writes the text and its
    newline separately, so lines from the server threads interleaved."""
    stream = stream or sys.stdout
    with _say_lock:
        stream.write(text + "\n")
        stream.flush()


class Debugger(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"debugpy-demo\n")


class Board(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        rows = "".join(
            f"<tr><td>{e}</td><td>{l:.4f}</td></tr>" for e, l in progress["history"][-20:]
        )
        body = (
            "<!doctype html><html><head><title>TensorBoard (porthole demo)</title></head>"
            "<body><h1>TensorBoard (porthole demo)</h1>"
            f"<p>epoch {progress['epoch']} of {EPOCHS}</p>"
            f"<table><tr><th>epoch</th><th>loss</th></tr>{rows}</table></body></html>\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # keep the training log readable


class Threaded(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(server, name):
    say(f"{name} listening on {server.server_address[0]}:{server.server_address[1]}")
    server.serve_forever()


def start(handler, port, name):
    try:
        server = Threaded(("127.0.0.1", port), handler)
    except OSError as e:
        # Another demo run may hold the port; training goes on without it.
        say(f"{name}: cannot listen on 127.0.0.1:{port}: {e}", sys.stderr)
        return
    threading.Thread(target=serve, args=(server, name), daemon=True).start()


def main():
    start(Debugger, 5678, "debugger (debugpy stand-in)")
    start(Board, 6006, "tensorboard")
    random.seed(42)
    loss = 2.5
    say(f"training for {EPOCHS} epochs")
    for epoch in range(1, EPOCHS + 1):
        time.sleep(1)
        loss = loss * 0.985 + random.uniform(-0.02, 0.02) * math.exp(-epoch / 60)
        progress["epoch"] = epoch
        progress["history"].append((epoch, loss))
        say(f"epoch {epoch}/{EPOCHS} loss={loss:.4f}")
    say("training done")


if __name__ == "__main__":
    main()
