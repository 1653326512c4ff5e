#!/usr/bin/env bash
# Test dependencies besides the mail stack, installed idempotently (CI runs on a clean machine):
# the `standardwebhooks` package from PyPI, the independent verifier tests/notices.rs and
# benches/notices.rs use on the webhook receiver (tests/support_webhooks/receiver.py).
set -euo pipefail
# The reports' tests use an IANA time zone (`[reports] timezone = "Europe/Moscow"`), which
# jiff reads from the system's tz database.
if [ ! -e /usr/share/zoneinfo/Europe/Moscow ]; then
    apt-get update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tzdata
fi
if python3 -c 'import standardwebhooks' 2>/dev/null; then
    exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip
fi
# Debian's python marks the system site-packages as externally managed (PEP 668).
python3 -m pip install -q 'standardwebhooks>=1.0.1' 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'standardwebhooks>=1.0.1'
python3 -c 'import standardwebhooks'
