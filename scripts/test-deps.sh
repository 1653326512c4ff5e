#!/usr/bin/env bash
# Test dependencies besides the mail stack, installed idempotently (CI runs on a clean machine):
# - the `standardwebhooks` package from PyPI, the independent verifier tests/notices.rs and
#   benches/notices.rs use on the webhook receiver (tests/support_webhooks/receiver.py);
# - for the browser tests (tests/ui_browser.rs, tests/common/browser.rs): Debian's `chromium`
#   and `chromium-driver` (the driver pins the browser's version), a font with Cyrillic glyphs,
#   and axe-core pinned in tests/browser-deps/package-lock.json, installed with `npm ci` into
#   tests/browser-deps/node_modules (gitignored);
# - tzdata, for the reports' time zone.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    apt-get -o DPkg::Lock::Timeout=600 update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "$@"
}

# ---- tz database (the reports' tests use `[reports] timezone = "Europe/Moscow"`; jiff reads
# the system's tz database) ----
if [ ! -e /usr/share/zoneinfo/Europe/Moscow ]; then
    apt_install tzdata
fi

# ---- standardwebhooks (PyPI) ----
if ! python3 -c 'import standardwebhooks' 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    # Debian's python marks the system site-packages as externally managed (PEP 668).
    python3 -m pip install -q 'standardwebhooks>=1.0.1' 2>/dev/null \
        || python3 -m pip install -q --break-system-packages 'standardwebhooks>=1.0.1'
    python3 -c 'import standardwebhooks'
fi

# ---- headless Chromium + ChromeDriver (Debian) ----
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
    || ! fc-list 2>/dev/null | grep -qi 'DejaVu Sans'; then
    apt_install chromium chromium-driver fonts-dejavu-core fontconfig
fi
browser=$(chromium --version | grep -Eo '[0-9]+(\.[0-9]+)+' | head -n1)
driver=$(chromedriver --version | grep -Eo '[0-9]+(\.[0-9]+)+' | head -n1)
if [ "$browser" != "$driver" ]; then
    echo "scripts/test-deps.sh: chromium $browser and chromedriver $driver differ; upgrading both" >&2
    apt_install chromium chromium-driver
fi

# ---- axe-core (npm, pinned by tests/browser-deps/package-lock.json) ----
axe_dir=tests/browser-deps
want=$(sed -n 's/.*"axe-core": *"\([^"]*\)".*/\1/p' "$axe_dir/package.json" | head -n1)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    "$axe_dir/node_modules/axe-core/package.json" 2>/dev/null | head -n1 || true)
if [ "$have" != "$want" ] || [ ! -s "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
    if ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    npm ci --prefix "$axe_dir" --no-audit --no-fund --ignore-scripts
fi
test -s "$axe_dir/node_modules/axe-core/axe.min.js"
