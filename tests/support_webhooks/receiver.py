#!/usr/bin/env python3
"""A real webhook receiver on 127.0.0.1 for tests/notices.rs and benches/notices.rs.

Every POST is verified with the independent `standardwebhooks` package from PyPI
(scripts/test-deps.sh installs it) using the endpoint's secret, and logged as one JSON line:
{"event": "start"|"done", "id", "timestamp", "verified", "error", "type", "status"}.
What it answers is read per request from the mode file (JSON: {"status": 200, "delay": 0,
"retry_after": null}), so a test can switch it between 200, 500, 410, 503 + Retry-After and slow.
Usage: receiver.py --port N --secret whsec_... --log FILE --mode FILE
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--secret", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--mode", required=True)
args = ap.parse_args()
wh = Webhook(args.secret)
lock = threading.Lock()


def log(rec):
    with lock, open(args.log, "a") as f:
        f.write(json.dumps(rec) + "\n")


def mode():
    try:
        with open(args.mode) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"status": 200}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(n)
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signatures": len(headers.get("webhook-signature", "").split()),
        }
        try:
            payload = wh.verify(body, headers)
            rec["verified"] = True
            rec["type"] = payload.get("type")
            rec["data"] = payload.get("data")
        except Exception as e:  # the verifier's verdict is the test's evidence
            rec["verified"] = False
            rec["error"] = repr(e)
        m = mode()
        log(dict(rec, event="start"))
        if m.get("delay"):
            time.sleep(float(m["delay"]))
        status = int(m.get("status", 200))
        out = b"ok" if status < 300 else b"not now"
        self.send_response(status)
        if m.get("retry_after") is not None:
            self.send_header("Retry-After", str(m["retry_after"]))
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        log(dict(rec, event="done", status=status))


srv = ThreadingHTTPServer(("127.0.0.1", args.port), H)
print("listening", flush=True)
sys.stdout.flush()
srv.serve_forever()
