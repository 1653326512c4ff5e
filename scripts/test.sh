#!/usr/bin/env bash
# The whole test suite, as README.md documents it and .ci/run calls it. On a fresh Debian
# machine it installs and starts what the tests need (Postfix and Dovecot on 127.0.0.1, through
# scripts/mailstack.sh), then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the mail-stack tests need root (they install and run Postfix and Dovecot)" >&2
    exit 1
fi

# systemd-analyze checks the unit file offline (tests/service.rs).
if ! command -v systemd-analyze >/dev/null; then
    echo "== installing systemd (for systemd-analyze)"
    apt-get update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd
fi

echo "== mail stack (Postfix + Dovecot on 127.0.0.1)"
scripts/mailstack.sh up

echo "== test dependencies (standardwebhooks from PyPI; chromium, chromedriver and axe-core for the browser tests)"
scripts/test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
# Library, binary and integration tests (there are no doc tests; benches run with cargo bench).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
