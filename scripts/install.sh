#!/usr/bin/env bash
# Installs regmail the Debian way (the equivalent of `make install`): the release binary, the
# systemd unit, the example configuration, the registrar profiles, the man page and shell
# completions. DESTDIR stages into a directory (as packaging does); without it, installs into /.
#   cargo build --release && sudo scripts/install.sh
#   DESTDIR=/tmp/stage scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${REGMAIL_BIN:-target/release/regmail}
dest=${DESTDIR:-}
[ -x "$bin" ] || { echo "install.sh: $bin not found; run cargo build --release first" >&2; exit 1; }

install -D -m 0755 "$bin" "$dest/usr/bin/regmail"
install -D -m 0644 systemd/regmail.service "$dest/lib/systemd/system/regmail.service"
install -d -m 0755 "$dest/etc/regmail"
# Never overwrite an operator's configuration.
[ -e "$dest/etc/regmail/regmail.toml" ] || install -m 0644 systemd/regmail.toml "$dest/etc/regmail/regmail.toml"
install -d -m 0755 "$dest/usr/share/regmail/request-templates"
cp -r request-templates/. "$dest/usr/share/regmail/request-templates/"
install -D -m 0644 README.md "$dest/usr/share/doc/regmail/README.md"
# The real-R01 example (README, "Deploy"): copy it to /etc/regmail/regmail.toml and fill it in.
install -D -m 0644 systemd/regmail-r01.toml "$dest/usr/share/doc/regmail/regmail-r01.toml"
install -d -m 0755 "$dest/usr/share/man/man1"
"$bin" man | gzip -9n > "$dest/usr/share/man/man1/regmail.1.gz"
install -d -m 0755 "$dest/usr/share/bash-completion/completions" "$dest/usr/share/zsh/vendor-completions" "$dest/usr/share/fish/vendor_completions.d"
"$bin" completions bash > "$dest/usr/share/bash-completion/completions/regmail"
"$bin" completions zsh > "$dest/usr/share/zsh/vendor-completions/_regmail"
"$bin" completions fish > "$dest/usr/share/fish/vendor_completions.d/regmail.fish"
# The API token the unit loads as a credential (LoadCredential=api-token:...), mode 0600; an
# existing one is kept. The registrar password comes from the operator: `regmail init`.
"$bin" init --dir "$dest/etc/regmail" --token-only
# The service runs as a dynamic user (DynamicUser=yes): no account to create.
if [ -z "$dest" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "installed regmail into ${dest:-/}"
