#!/usr/bin/env bash
# scripts/mailstack.sh: a real mail stack on 127.0.0.1 for regmail's integration tests.
#
#   Postfix 3.7 (SMTP 25, submission 587 STARTTLS+AUTH, submissions 465 implicit TLS+AUTH)
#     --LMTP--> Dovecot 2.3 (IMAP 143 STARTTLS, IMAPS 993), virtual users, one maildir tree.
#
# Debian 12 (bookworm) only, run as root, needs no systemd and no syslog. Listens on 127.0.0.1
# only and delivers to its own virtual domains only: any other recipient is refused at RCPT TO,
# so nothing is ever relayed or sent anywhere else. Test-only passwords, see `env`.
#
# Usage: scripts/mailstack.sh COMMAND [ARGS]
#   up                     install packages if missing, configure, start (idempotent; fast when up)
#   down                   stop Postfix and Dovecot, wait until every one of their processes is gone
#   status                 check every port, TLS and socket; exit 0 iff everything answers
#   env                    print KEY=value lines for tests (also written to /etc/mailstack/env by up)
#   selftest               send through 25, 587 (STARTTLS+AUTH) and 465, read back over IMAP; loud
#   wipe [--hard]          empty every mailbox of every user and drop the Postfix queue; servers
#                          keep running. Default: expunge (UIDVALIDITY and UIDNEXT are kept).
#                          --hard: delete the maildirs (Dovecot re-creates them with a NEW
#                          UIDVALIDITY, which is time-based: only >1 s later is it different)
#   count USER [MAILBOX]   print the number of messages in MAILBOX (default INBOX)
#   inject USER FILE [MAILBOX]
#                          store a raw .eml (FILE, or - for stdin) verbatim with `doveadm save`
#   stop-postfix | start-postfix | restart-dovecot
#                          for fault tests (Dovecot keeps running / Postfix keeps running)
#   logs                   print the last lines of both daemon logs
#   USER is a full address (gateway@gateway.test) or just its local part (gateway).
#
# Fixed locations (one stack per machine; `up` overwrites the files it owns):
#   /etc/mailstack/tls/ca.pem       test CA certificate: clients must trust this file (regmail ca_file)
#   /etc/mailstack/tls/ca.key       test CA key (0600)
#   /etc/mailstack/tls/cert.pem     server certificate (CN mail.gateway.test, SAN localhost,
#                                   mail.gateway.test, IP 127.0.0.1), signed by the CA, not a CA itself
#   /etc/mailstack/tls/key.pem      server key (0600)
#   /etc/mailstack/env              the output of `env`
#   /etc/mailstack/.lock            serialises concurrent invocations (flock)
#   /etc/postfix/main.cf, master.cf, vmailbox          Postfix config (rewritten only when different)
#   /etc/postfix/transport                             bounce.test -> bouncer: (accepted, then bounced)
#   /etc/dovecot/dovecot.conf, users                   Dovecot config (Debian's original kept once
#                                                      as dovecot.conf.debian-orig; conf.d unused)
#   /var/mail/vhosts/<domain>/<local>/Maildir          the mailboxes, owned by vmail (uid/gid 5000)
#   /var/log/postfix.log, /var/log/dovecot.log         daemon logs (there is no syslog)
#   /var/log/mailstack-apt.log                         output of the last package installation
#   /var/spool/postfix/pid/master.pid, /run/dovecot/master.pid   daemon PIDs (stop is by PID)
#   /var/spool/postfix/private/{auth,dovecot-lmtp}     Dovecot's SASL and LMTP sockets for Postfix
#
# See shared/mailstack-notes.md for why each setting is there (gotchas G1..G17 are cited below).

set -euo pipefail

# Never hand a caller's descriptor (a test runner's lock, say) to Postfix or Dovecot: a daemon
# that inherits an flock holds it for as long as it runs. Bash reads this script on fd 255.
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    if ((fd > 2 && fd < 255)); then eval "exec $fd>&-"; fi
done

# ---------------------------------------------------------------------------------------------
# Constants
readonly HOST=127.0.0.1
readonly PORT_SMTP=25 PORT_SUBMISSION=587 PORT_SMTPS=465 PORT_IMAP=143 PORT_IMAPS=993
readonly SERVER_NAME=mail.gateway.test
readonly DOMAINS="gateway.test registrar.test customer.test hosting.test"
# gateway/robot/copies/other: regmail's callback mailbox, the registrar, BCC copies, a stranger.
# owner/admin/user@customer.test: a customer's account users (notices); ops@hosting.test: the
# hosting company's own staff (operator notices and reseller reports).
readonly USERS=(gateway@gateway.test robot@registrar.test copies@gateway.test other@gateway.test
    owner@customer.test admin@customer.test user@customer.test ops@hosting.test)
readonly UNKNOWN_USER=nobody@gateway.test   # in a virtual domain, not a mailbox: 550 at RCPT
# A relay domain Postfix accepts and then bounces (transport_maps -> a pipe that fails): the bounce
# comes back to the envelope sender, e.g. regmail's per-request VERP address (issue 9).
readonly BOUNCE_DOMAIN=bounce.test

readonly STATE_DIR=/etc/mailstack
readonly TLS_DIR=$STATE_DIR/tls
readonly CA_FILE=$TLS_DIR/ca.pem CA_KEY=$TLS_DIR/ca.key
readonly CERT_FILE=$TLS_DIR/cert.pem KEY_FILE=$TLS_DIR/key.pem
readonly ENV_FILE=$STATE_DIR/env
readonly LOCK_FILE=$STATE_DIR/.lock

readonly MAIL_ROOT=/var/mail/vhosts
readonly VMAIL_UID=5000 VMAIL_GID=5000

readonly PF_DIR=/etc/postfix
readonly PF_PIDFILE=/var/spool/postfix/pid/master.pid
readonly PF_PRIVATE=/var/spool/postfix/private
readonly PF_LOG=/var/log/postfix.log
readonly DC_DIR=/etc/dovecot
readonly DC_CONF=$DC_DIR/dovecot.conf DC_USERS=$DC_DIR/users
readonly DC_PIDFILE=/run/dovecot/master.pid
readonly DC_LOG=/var/log/dovecot.log
readonly APT_LOG=/var/log/mailstack-apt.log

readonly PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl ca-certificates)
readonly READY_TIMEOUT=30   # seconds to wait for ports/sockets after a start or reload
readonly STOP_TIMEOUT=30    # seconds to wait for processes to exit before SIGKILL

export LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

password_of() { printf 'secret-%s' "${1%%@*}"; }   # test-only passwords: secret-gateway, ...

# ---------------------------------------------------------------------------------------------
# Helpers
log() { printf 'mailstack: %s\n' "$*" >&2; }

# Temporary files and the temporary policy-rc.d are removed on any exit.
CLEANUP=()
cleanup() { local f; for f in "${CLEANUP[@]}"; do rm -rf "$f"; done; }
trap cleanup EXIT
die() { printf 'mailstack: ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "'$CMD' must run as root (Postfix, Dovecot and doveadm need it); try: sudo $0 $CMD"
}

now_ms() { local t; t=$(date +%s%N); printf '%s' $((t / 1000000)); }

take_lock() {
    install -d -m 0755 "$STATE_DIR"
    exec 8>"$LOCK_FILE"
    flock -w 600 8 || die "could not lock $LOCK_FILE within 600 s (another mailstack.sh is running?)"
}

show_logs() {
    local f
    for f in "$DC_LOG" "$PF_LOG"; do
        [[ -f $f ]] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n "${1:-25}" "$f" >&2 || true
    done
}

installed() { command -v postfix >/dev/null 2>&1 && command -v dovecot >/dev/null 2>&1 && command -v doveadm >/dev/null 2>&1; }

# "comm state" of a live process, or fail. A zombie counts as dead: PID 1 on some container
# hosts reaps orphans late, and a stopped master can linger as a zombie for many seconds.
proc_info() { # pid
    local stat
    { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    local comm=${stat#*(}; comm=${comm%)*}
    local state=${stat##*) }; state=${state%% *}
    [[ -n $state && $state != Z && $state != X ]] || return 1
    printf '%s %s' "$comm" "$state"
}

# PID of a running master (verified by its command name, so a stale pid file is ignored), or fail.
pid_if_alive() { # pidfile comm
    local pid info
    [[ -r $1 ]] || return 1
    pid=$(tr -dc '0-9' 2>/dev/null <"$1") || return 1
    [[ -n $pid ]] || return 1
    info=$(proc_info "$pid") || return 1
    [[ ${info% *} == "$2" ]] || return 1
    printf '%s' "$pid"
}
dovecot_pid() { pid_if_alive "$DC_PIDFILE" dovecot; }
postfix_pid() { pid_if_alive "$PF_PIDFILE" master; }

# A PID and all its descendants (read from /proc, so procps is not needed).
proc_tree() {
    local root=$1 f rest pid ppid
    local -A kids=()
    for f in /proc/[0-9]*/stat; do
        { IFS= read -r rest <"$f"; } 2>/dev/null || continue
        pid=${rest%% *}
        rest=${rest##*) }        # after "pid (comm) ": "state ppid ..."
        rest=${rest#* }
        ppid=${rest%% *}
        kids[$ppid]+="$pid "
    done
    local queue=("$root") out=() p
    while ((${#queue[@]})); do
        p=${queue[0]}; queue=("${queue[@]:1}")
        out+=("$p")
        # shellcheck disable=SC2206
        [[ -n ${kids[$p]:-} ]] && queue+=(${kids[$p]})
    done
    printf '%s\n' "${out[@]}"
}

# Wait until none of the given PIDs exists (zombies count as gone); SIGKILL them after a timeout.
wait_pids_gone() { # what pid...
    local what=$1; shift
    local deadline=$(( $(now_ms) + STOP_TIMEOUT * 1000 )) p alive
    while :; do
        alive=()
        for p in "$@"; do proc_info "$p" >/dev/null && alive+=("$p"); done
        ((${#alive[@]})) || return 0
        if (( $(now_ms) > deadline )); then
            log "WARNING: $what processes still running after ${STOP_TIMEOUT}s: ${alive[*]}; sending SIGKILL"
            kill -KILL "${alive[@]}" 2>/dev/null || true
            sleep 0.5
            return 0
        fi
        sleep 0.1
    done
}

# First line the server sends on a plain TCP port ("" if nothing answers). Sends QUIT/LOGOUT after.
banner() { # port goodbye-line
    local out
    # shellcheck disable=SC2016 # expanded by the inner bash
    out=$(timeout 6 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        IFS= read -r -t 5 line <&3 || exit 1
        printf "%s\r\n" "$2" >&3 || true
        printf "%s" "$line"' "$HOST" "$1" "$2" 2>/dev/null) || true
    printf '%s' "${out%$'\r'}"
}

# TLS probe that verifies the certificate against our CA and the name; prints what the server sent.
tls_probe() { # port starttls-proto-or-empty goodbye-line
    local port=$1 proto=$2 bye=$3 args=()
    [[ -n $proto ]] && args=(-starttls "$proto")
    printf '%s\r\n' "$bye" | timeout 8 openssl s_client -connect "$HOST:$port" "${args[@]}" \
        -CAfile "$CA_FILE" -verify_return_error -verify_hostname "$SERVER_NAME" -quiet 2>/dev/null || true
}

# Individual readiness checks; each returns 0 when that part answers correctly.
chk_sockets()  { [[ -S $PF_PRIVATE/auth && -S $PF_PRIVATE/dovecot-lmtp ]]; }
chk_smtp()     { [[ $(banner "$PORT_SMTP" QUIT) == 220* ]]; }
chk_subm()     { [[ $(banner "$PORT_SUBMISSION" QUIT) == 220* ]]; }
chk_imap()     { [[ $(banner "$PORT_IMAP" 'a LOGOUT') == '* OK'* ]]; }
chk_smtps()    { [[ $(tls_probe "$PORT_SMTPS" '' QUIT) == 220* ]]; }
chk_subm_tls() { [[ $(tls_probe "$PORT_SUBMISSION" smtp QUIT) == *221* ]]; }
chk_imaps()    { [[ $(tls_probe "$PORT_IMAPS" '' 'a LOGOUT') == '* OK'* ]]; }
chk_imap_tls() { [[ $(tls_probe "$PORT_IMAP" imap 'a LOGOUT') == *'a OK'* ]]; }

dovecot_ready() { chk_sockets && chk_imap && chk_imaps; }
postfix_ready() { chk_smtp && chk_subm && chk_smtps; }

wait_ready() { # dovecot|postfix|all
    local what=$1 deadline=$(( $(now_ms) + READY_TIMEOUT * 1000 ))
    while :; do
        case $what in
            dovecot) dovecot_ready && return 0 ;;
            postfix) postfix_ready && return 0 ;;
            all) dovecot_ready && postfix_ready && return 0 ;;
        esac
        if (( $(now_ms) > deadline )); then
            show_logs
            die "$what did not become ready within ${READY_TIMEOUT}s (run '$0 status' for details; logs above)"
        fi
        sleep 0.05
    done
}

# shellcheck disable=SC2016 # expanded by the inner bash
port_taken() { [[ -n $(banner "$1" QUIT) ]] || timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null; }

resolve_user() { # USER (address or local part) -> address known to Dovecot
    local u=${1,,} line
    if [[ $u != *@* ]]; then
        for line in "${USERS[@]}"; do [[ ${line%%@*} == "$u" ]] && { printf '%s' "$line"; return 0; }; done
        die "unknown mailbox user '$1' (known: ${USERS[*]})"
    fi
    if [[ -r $DC_USERS ]] && grep -q "^${u//./\\.}:" "$DC_USERS"; then printf '%s' "$u"; return 0; fi
    for line in "${USERS[@]}"; do [[ $line == "$u" ]] && { printf '%s' "$u"; return 0; }; done
    die "unknown mailbox user '$1' (known: ${USERS[*]})"
}

need_dovecot_running() {
    installed || die "the mail stack is not installed; run: $0 up"
    dovecot_pid >/dev/null || die "Dovecot is not running; run: $0 up"
}

# ---------------------------------------------------------------------------------------------
# Installation
pkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == 'install ok installed' ]]; }

ensure_packages() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 (bookworm) only"
    log "installing ${missing[*]} (apt-get; output in $APT_LOG)"
    local t0; t0=$(now_ms)
    # "No configuration": we write main.cf ourselves; "Local only" would put a mailname into
    # mydestination that can collide with a virtual domain (G4), and is slower.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep the postinst scripts from starting the daemons with Debian's config (G17): a
    # policy-rc.d that refuses is put in place only for the install, only if there is none.
    local policy_made=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        CLEANUP+=(/usr/sbin/policy-rc.d)
        printf '#!/bin/sh\n# temporary, from regmail scripts/mailstack.sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    : >"$APT_LOG"
    local ok=0
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "apt package lists are empty: running apt-get update first"
        "${apt[@]}" update </dev/null >>"$APT_LOG" 2>&1 || { tail -n 30 "$APT_LOG" >&2; die "apt-get update failed (see $APT_LOG)"; }
    fi
    if "${apt[@]}" install --no-install-recommends "${missing[@]}" </dev/null >>"$APT_LOG" 2>&1; then
        ok=1
    else
        log "apt-get install failed; running apt-get update and trying once more"
        if "${apt[@]}" update </dev/null >>"$APT_LOG" 2>&1 &&
           "${apt[@]}" install --no-install-recommends "${missing[@]}" </dev/null >>"$APT_LOG" 2>&1; then
            ok=1
        fi
    fi
    if ((policy_made)); then rm -f /usr/sbin/policy-rc.d; fi
    if ((!ok)); then tail -n 30 "$APT_LOG" >&2; die "could not install ${missing[*]} (see $APT_LOG)"; fi
    log "installed in $(( $(now_ms) - t0 )) ms"
}

ensure_vmail() {
    local g u
    g=$(getent group vmail || true)
    if [[ -z $g ]]; then
        getent group "$VMAIL_GID" >/dev/null && die "gid $VMAIL_GID is taken by group '$(getent group "$VMAIL_GID" | cut -d: -f1)'; the test stack needs it for 'vmail'"
        groupadd --system -K SYS_GID_MAX="$VMAIL_GID" -g "$VMAIL_GID" vmail
    elif [[ $(cut -d: -f3 <<<"$g") != "$VMAIL_GID" ]]; then
        die "group vmail exists with gid $(cut -d: -f3 <<<"$g"), expected $VMAIL_GID"
    fi
    u=$(getent passwd vmail || true)
    if [[ -z $u ]]; then
        getent passwd "$VMAIL_UID" >/dev/null && die "uid $VMAIL_UID is taken by user '$(getent passwd "$VMAIL_UID" | cut -d: -f1)'; the test stack needs it for 'vmail'"
        useradd --system -K SYS_UID_MAX="$VMAIL_UID" -u "$VMAIL_UID" -g vmail --home-dir "$MAIL_ROOT" --no-create-home \
            --shell /usr/sbin/nologin vmail
    elif [[ $(cut -d: -f3 <<<"$u") != "$VMAIL_UID" ]]; then
        die "user vmail exists with uid $(cut -d: -f3 <<<"$u"), expected $VMAIL_UID (Dovecot's first/last_valid_uid are pinned to it, G6)"
    fi
    install -d -m 0775 /var/mail
    install -d -o vmail -g vmail -m 0770 "$MAIL_ROOT"
    # G14: every parent must be traversable by vmail or LMTP answers 451 and mail is deferred.
    runuser -u vmail -- test -w "$MAIL_ROOT" ||
        die "$MAIL_ROOT is not writable by user vmail (a parent directory lacks +x?)"
}

# ---------------------------------------------------------------------------------------------
# TLS: a test CA and a leaf certificate signed by it (a self-signed leaf has CA:TRUE, which
# rustls refuses as CaUsedAsEndEntity, notes 4.3). Made once; remade if missing or invalid.
TLS_CHANGED=0
tls_valid() {
    [[ -s $CA_FILE && -s $CA_KEY && -s $CERT_FILE && -s $KEY_FILE ]] || return 1
    openssl verify -CAfile "$CA_FILE" -purpose sslserver "$CERT_FILE" >/dev/null 2>&1 || return 1
    openssl x509 -in "$CERT_FILE" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
    [[ $(openssl x509 -in "$CERT_FILE" -noout -pubkey 2>/dev/null) == "$(openssl pkey -in "$KEY_FILE" -pubout 2>/dev/null)" ]] || return 1
    openssl x509 -in "$CERT_FILE" -noout -ext subjectAltName 2>/dev/null | grep -q 'IP Address:127.0.0.1' || return 1
}

ca_valid() {
    [[ -s $CA_FILE && -s $CA_KEY ]] || return 1
    openssl x509 -in "$CA_FILE" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
    [[ $(openssl x509 -in "$CA_FILE" -noout -pubkey 2>/dev/null) == "$(openssl pkey -in "$CA_KEY" -pubout 2>/dev/null)" ]]
}

ensure_tls() {
    install -d -m 0755 "$TLS_DIR"
    tls_valid && return 0
    local keep_ca=0
    if ca_valid; then
        keep_ca=1
        log "remaking the server certificate in $TLS_DIR (keeping the test CA)"
    else
        log "creating the test CA and server certificate in $TLS_DIR"
    fi
    local tmp; tmp=$(mktemp -d); CLEANUP+=("$tmp")
    if ((keep_ca)); then cp "$CA_FILE" "$tmp/ca.pem"; cp "$CA_KEY" "$tmp/ca.key"; fi
    (
        set -e
        cd "$tmp"
        umask 077
        [[ -s ca.pem ]] || openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=regmail mailstack test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$SERVER_NAME" -keyout key.pem -out server.csr
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
            'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
            "subjectAltName=DNS:localhost,DNS:$SERVER_NAME,IP:127.0.0.1" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
            -days 3650 -sha256 -extfile server.ext -out cert.pem
    ) >/dev/null 2>"$tmp/openssl.err" || { cat "$tmp/openssl.err" >&2; rm -rf "$tmp"; die "openssl failed to create the test certificates"; }
    install -m 0600 -o root -g root "$tmp/ca.key" "$CA_KEY.new"
    install -m 0644 -o root -g root "$tmp/ca.pem" "$CA_FILE.new"
    install -m 0600 -o root -g root "$tmp/key.pem" "$KEY_FILE.new"
    install -m 0644 -o root -g root "$tmp/cert.pem" "$CERT_FILE.new"
    mv -f "$CA_KEY.new" "$CA_KEY"; mv -f "$CA_FILE.new" "$CA_FILE"
    mv -f "$KEY_FILE.new" "$KEY_FILE"; mv -f "$CERT_FILE.new" "$CERT_FILE"
    rm -rf "$tmp"
    tls_valid || die "the freshly made certificates in $TLS_DIR do not verify"
    TLS_CHANGED=1
}

# ---------------------------------------------------------------------------------------------
# Configuration. Every file is generated into a staging directory and installed only when its
# content or mode differs, so `up` on a running, unchanged stack reloads nothing. Written files
# get an mtime 2 s in the past (G11: Postfix stalls ~2 s on "hot" config files).
POSTFIX_CHANGED=0 DOVECOT_CHANGED=0

install_if_changed() { # src dst mode owner:group -> 0 if it was installed
    local src=$1 dst=$2 mode=$3 og=$4
    if [[ -f $dst ]] && cmp -s "$src" "$dst" && [[ $(stat -c '%a %U:%G' "$dst") == "${mode#0} $og" ]]; then
        return 1
    fi
    install -m "$mode" -o "${og%%:*}" -g "${og##*:}" "$src" "$dst.mailstack-new"
    touch -d '-2 seconds' "$dst.mailstack-new"
    mv -f "$dst.mailstack-new" "$dst"
    log "wrote $dst"
    return 0
}

# Same settings as notes 4.4 (one per line, fixed order), plus: retry deferred mail within 10 s
# rather than 5 min (G15), and one recipient per LMTP transaction. Without that limit a message
# for two local recipients (e.g. To + BCC) is delivered in one LMTP transaction, and Dovecot then
# leaves out Delivered-To: the prepended headers would depend on how many recipients there were.
write_main_cf() { # -> file content on stdout
    cat <<EOF
# Generated by regmail scripts/mailstack.sh: a test-only mail stack on 127.0.0.1. Do not edit.
compatibility_level = 3.6
myhostname = $SERVER_NAME
mydestination = localhost
inet_interfaces = $HOST
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
maillog_file = $PF_LOG
biff = no
append_dot_mydomain = no
local_header_rewrite_clients =
smtputf8_enable = no
virtual_mailbox_domains = $DOMAINS
virtual_mailbox_maps = texthash:$PF_DIR/vmailbox
virtual_transport = lmtp:unix:private/dovecot-lmtp
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
service_throttle_time = 1s
smtpd_tls_cert_file = $CERT_FILE
smtpd_tls_key_file = $KEY_FILE
smtpd_tls_security_level = may
default_transport = error:5.7.1 mailstack test stack delivers to local virtual domains only
relay_transport = error:5.7.1 mailstack test stack delivers to local virtual domains only
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 60s
lmtp_destination_recipient_limit = 1
recipient_delimiter = +
relay_domains = $BOUNCE_DOMAIN
transport_maps = texthash:$PF_DIR/transport
EOF
}

write_master_cf() { # stage-dir: Debian's pristine master.cf, edited with postconf (notes 4.5)
    local st=$1
    [[ -r /usr/share/postfix/master.cf.dist ]] || die "/usr/share/postfix/master.cf.dist is missing (postfix package broken?)"
    cp /usr/share/postfix/master.cf.dist "$st/master.cf"
    local pc=(postconf -c "$st")
    "${pc[@]}" -MX smtp/inet
    "${pc[@]}" -M "$PORT_SMTP/inet=$PORT_SMTP inet n - n - - smtpd"
    "${pc[@]}" -M "$PORT_SUBMISSION/inet=$PORT_SUBMISSION inet n - n - - smtpd"
    "${pc[@]}" -P "$PORT_SUBMISSION/inet/syslog_name=postfix/submission" \
        "$PORT_SUBMISSION/inet/smtpd_sasl_auth_enable=yes" \
        "$PORT_SUBMISSION/inet/smtpd_relay_restrictions=permit_sasl_authenticated,reject"
    "${pc[@]}" -M "$PORT_SMTPS/inet=$PORT_SMTPS inet n - n - - smtpd"
    "${pc[@]}" -P "$PORT_SMTPS/inet/syslog_name=postfix/submissions" "$PORT_SMTPS/inet/smtpd_tls_wrappermode=yes" \
        "$PORT_SMTPS/inet/smtpd_sasl_auth_enable=yes" \
        "$PORT_SMTPS/inet/smtpd_relay_restrictions=permit_sasl_authenticated,reject"
    # bounce.test: accepted at RCPT, then the pipe fails permanently and Postfix bounces the
    # message to its envelope sender (an error: transport would be refused at RCPT instead).
    "${pc[@]}" -M "bouncer/unix=bouncer unix - n n - - pipe flags= user=nobody argv=/bin/false"
    "${pc[@]}" -F '*/*/chroot = n'     # G5
}

write_dovecot_conf() {
    cat <<EOF
# Generated by regmail scripts/mailstack.sh: a test-only mail stack on 127.0.0.1. Do not edit.
# Self-contained: Debian's conf.d/ is not included (original kept as dovecot.conf.debian-orig).
protocols = imap lmtp
listen = $HOST
hostname = $SERVER_NAME
base_dir = /run/dovecot
log_path = $DC_LOG
recipient_delimiter = +
auth_verbose = yes

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0

ssl = yes
ssl_cert = <$CERT_FILE
ssl_key = <$KEY_FILE
ssl_dh = </usr/share/dovecot/dh.pem

first_valid_uid = $VMAIL_UID
last_valid_uid = $VMAIL_UID
first_valid_gid = $VMAIL_GID
last_valid_gid = $VMAIL_GID
mail_location = maildir:~/Maildir

namespace inbox {
  inbox = yes
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $DC_USERS
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $DC_USERS
}

service imap-login {
  inet_listener imap {
    address = $HOST
    port = $PORT_IMAP
  }
  inet_listener imaps {
    address = $HOST
    port = $PORT_IMAPS
    ssl = yes
  }
}
service lmtp {
  unix_listener $PF_PRIVATE/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener $PF_PRIVATE/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  mail_max_userip_connections = 200
}
EOF
}

configure() {
    local st; st=$(mktemp -d); CLEANUP+=("$st")
    local u local_part domain
    : >"$st/users"; : >"$st/vmailbox"
    for u in "${USERS[@]}"; do
        local_part=${u%%@*}; domain=${u#*@}
        printf '%s:{PLAIN}%s:%s:%s::%s/%s/%s::\n' "$u" "$(password_of "$u")" "$VMAIL_UID" "$VMAIL_GID" \
            "$MAIL_ROOT" "$domain" "$local_part" >>"$st/users"
        printf '%s OK\n' "$u" >>"$st/vmailbox"
    done
    printf '%s bouncer:\n' "$BOUNCE_DOMAIN" >"$st/transport"
    write_main_cf >"$st/main.cf"
    write_master_cf "$st"
    write_dovecot_conf >"$st/dovecot.conf"
    [[ -r /usr/share/dovecot/dh.pem ]] || die "/usr/share/dovecot/dh.pem is missing (dovecot-core package broken?)"
    local err
    err=$(doveconf -c "$st/dovecot.conf" -n 2>&1 >/dev/null) || die "generated dovecot.conf is invalid: $err"

    if [[ -f $DC_CONF && ! -f $DC_CONF.debian-orig ]] && ! grep -q 'regmail scripts/mailstack.sh' "$DC_CONF"; then
        cp -p "$DC_CONF" "$DC_CONF.debian-orig"
    fi
    install_if_changed "$st/main.cf" "$PF_DIR/main.cf" 0644 root:root && POSTFIX_CHANGED=1
    install_if_changed "$st/master.cf" "$PF_DIR/master.cf" 0644 root:root && POSTFIX_CHANGED=1
    install_if_changed "$st/vmailbox" "$PF_DIR/vmailbox" 0644 root:root && POSTFIX_CHANGED=1
    install_if_changed "$st/transport" "$PF_DIR/transport" 0644 root:root && POSTFIX_CHANGED=1
    install_if_changed "$st/users" "$DC_USERS" 0640 root:dovecot && DOVECOT_CHANGED=1
    install_if_changed "$st/dovecot.conf" "$DC_CONF" 0644 root:root && DOVECOT_CHANGED=1
    if ((TLS_CHANGED)); then POSTFIX_CHANGED=1; DOVECOT_CHANGED=1; fi
    if ((POSTFIX_CHANGED)); then
        err=$(postfix check 2>&1) || die "postfix check failed: $err"
        [[ -z $err ]] || log "postfix check: $err"
    fi
    write_env >"$st/env"
    install_if_changed "$st/env" "$ENV_FILE" 0644 root:root >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------------
# Start / stop (no systemd). Dovecot first: Postfix's submission smtpd needs the auth socket (G10).
start_dovecot() {
    local stale
    if stale=$(tr -dc '0-9' 2>/dev/null <"$DC_PIDFILE") && [[ -n $stale ]] && ! dovecot_pid >/dev/null; then
        rm -f "$DC_PIDFILE"
    fi
    port_taken "$PORT_IMAP" && die "port $PORT_IMAP on $HOST is in use by another program (not our Dovecot)"
    port_taken "$PORT_IMAPS" && die "port $PORT_IMAPS on $HOST is in use by another program (not our Dovecot)"
    touch "$DC_LOG"
    # G1: Dovecot keeps stderr open after daemonizing; give it no pipe. fd 8 is our lock.
    dovecot </dev/null >/dev/null 2>>"$DC_LOG" 8>&- || { show_logs; die "dovecot failed to start (see $DC_LOG)"; }
}

start_postfix() {
    local p
    for p in "$PORT_SMTP" "$PORT_SUBMISSION" "$PORT_SMTPS"; do
        port_taken "$p" && die "port $p on $HOST is in use by another program (another MTA such as exim4?)"
    done
    local out
    out=$(postfix start </dev/null 2>&1 8>&-) || { printf '%s\n' "$out" >&2; show_logs; die "postfix failed to start"; }
}

stop_dovecot() {
    local pid pids
    pid=$(dovecot_pid) || return 0
    mapfile -t pids < <(proc_tree "$pid")
    kick_imap_clients
    kill -TERM "$pid" 2>/dev/null || true
    # G2: Postfix's smtpd processes hold SASL connections that keep Dovecot's auth processes
    # alive (orphaned) for up to 100 s; a reload makes those smtpd processes exit.
    if postfix_pid >/dev/null; then postfix reload </dev/null >/dev/null 2>&1 8>&- || true; fi
    wait_pids_gone dovecot "${pids[@]}"
}

stop_postfix() {
    local pid pids
    pid=$(postfix_pid) || return 0
    mapfile -t pids < <(proc_tree "$pid")
    postfix stop </dev/null >/dev/null 2>&1 8>&- || kill -TERM "$pid" 2>/dev/null || true
    wait_pids_gone postfix "${pids[@]}"
}

# An imap process in IDLE notices a stopped master only ~9 s later (and keeps Dovecot's log and
# stats processes alive meanwhile); kicking the clients first makes a stop take ~1 s.
kick_imap_clients() { doveadm kick '*' </dev/null >/dev/null 2>&1 8>&- || true; }

flush_queue() { postqueue -f </dev/null >/dev/null 2>&1 8>&- || true; }   # G15

# ---------------------------------------------------------------------------------------------
# Commands
write_env() {
    local u key
    printf 'MAILSTACK_HOST=%s\n' "$HOST"
    printf 'MAILSTACK_SMTP_PORT=%s\n' "$PORT_SMTP"
    printf 'MAILSTACK_SUBMISSION_PORT=%s\n' "$PORT_SUBMISSION"
    printf 'MAILSTACK_SMTPS_PORT=%s\n' "$PORT_SMTPS"
    printf 'MAILSTACK_IMAP_PORT=%s\n' "$PORT_IMAP"
    printf 'MAILSTACK_IMAPS_PORT=%s\n' "$PORT_IMAPS"
    printf 'MAILSTACK_TLS_SERVER_NAME=%s\n' "$SERVER_NAME"
    printf 'MAILSTACK_CA_FILE=%s\n' "$CA_FILE"
    printf 'MAILSTACK_MAILDIR_ROOT=%s\n' "$MAIL_ROOT"
    for u in "${USERS[@]}"; do
        key=${u%%@*}; key=${key^^}
        printf 'MAILSTACK_%s_USER=%s\n' "$key" "$u"
        printf 'MAILSTACK_%s_PASSWORD=%s\n' "$key" "$(password_of "$u")"
        printf 'MAILSTACK_%s_MAILDIR=%s/%s/%s/Maildir\n' "$key" "$MAIL_ROOT" "${u#*@}" "${u%%@*}"
    done
    printf 'MAILSTACK_UNKNOWN_USER=%s\n' "$UNKNOWN_USER"
    printf 'MAILSTACK_BOUNCE_ADDRESS=%s\n' "requests@$BOUNCE_DOMAIN"
    printf 'MAILSTACK_POSTFIX_LOG=%s\n' "$PF_LOG"
    printf 'MAILSTACK_DOVECOT_LOG=%s\n' "$DC_LOG"
}

cmd_up() {
    need_root; take_lock
    local t0; t0=$(now_ms)
    ensure_packages "${PACKAGES[@]}"
    ensure_vmail
    ensure_tls
    configure
    local dc_started=0
    if dovecot_pid >/dev/null; then
        if ((DOVECOT_CHANGED)); then log "reloading Dovecot"; doveadm reload 8>&- || { show_logs; die "doveadm reload failed (see $DC_LOG)"; }; fi
    else
        log "starting Dovecot"; start_dovecot; dc_started=1
    fi
    wait_ready dovecot
    if postfix_pid >/dev/null; then
        if ((POSTFIX_CHANGED || DOVECOT_CHANGED || dc_started)); then
            log "reloading Postfix"; postfix reload </dev/null >/dev/null 2>&1 8>&- || die "postfix reload failed"
        fi
    else
        log "starting Postfix"; start_postfix
    fi
    wait_ready postfix
    chk_subm_tls || { sleep 0.5; chk_subm_tls; } || die "STARTTLS on $PORT_SUBMISSION does not verify against $CA_FILE"
    chk_imap_tls || { sleep 0.5; chk_imap_tls; } || die "STARTTLS on $PORT_IMAP does not verify against $CA_FILE"
    flush_queue
    log "up in $(( $(now_ms) - t0 )) ms: SMTP $HOST:$PORT_SMTP, submission :$PORT_SUBMISSION, submissions :$PORT_SMTPS, IMAP :$PORT_IMAP, IMAPS :$PORT_IMAPS; CA $CA_FILE"
}

cmd_down() {
    need_root; take_lock
    local t0; t0=$(now_ms)
    local dpid ppid dpids=() ppids=()
    # Both at once (G2: stopping Dovecot alone leaves its auth processes to Postfix's smtpds).
    if ppid=$(postfix_pid); then
        mapfile -t ppids < <(proc_tree "$ppid")
        postfix stop </dev/null >/dev/null 2>&1 8>&- || kill -TERM "$ppid" 2>/dev/null || true
    fi
    if dpid=$(dovecot_pid); then
        mapfile -t dpids < <(proc_tree "$dpid")
        kick_imap_clients
        kill -TERM "$dpid" 2>/dev/null || true
    fi
    wait_pids_gone "mail stack" "${ppids[@]}" "${dpids[@]}"
    log "down in $(( $(now_ms) - t0 )) ms"
}

cmd_status() {
    local bad=0 pid
    check() { # label cmd...
        local label=$1; shift
        if "$@"; then printf 'ok    %s\n' "$label"; else printf 'FAIL  %s\n' "$label"; bad=1; fi
    }
    if pid=$(dovecot_pid); then printf 'ok    dovecot master pid %s\n' "$pid"; else printf 'FAIL  dovecot is not running\n'; bad=1; fi
    if pid=$(postfix_pid); then printf 'ok    postfix master pid %s\n' "$pid"; else printf 'FAIL  postfix is not running\n'; bad=1; fi
    check "sockets $PF_PRIVATE/auth and dovecot-lmtp" chk_sockets
    check "SMTP $HOST:$PORT_SMTP banner" chk_smtp
    check "submission $HOST:$PORT_SUBMISSION banner" chk_subm
    check "submission $HOST:$PORT_SUBMISSION STARTTLS, certificate verifies with $CA_FILE" chk_subm_tls
    check "submissions $HOST:$PORT_SMTPS implicit TLS, certificate verifies" chk_smtps
    check "IMAP $HOST:$PORT_IMAP banner" chk_imap
    check "IMAP $HOST:$PORT_IMAP STARTTLS, certificate verifies" chk_imap_tls
    check "IMAPS $HOST:$PORT_IMAPS implicit TLS, certificate verifies" chk_imaps
    if ((bad)); then printf 'mail stack is NOT fully up (try: %s up)\n' "$0"; return 1; fi
    printf 'mail stack is up\n'
}

cmd_wipe() {
    need_root; take_lock
    local hard=0
    case ${1:-} in --hard) hard=1 ;; '') ;; *) die "usage: $0 wipe [--hard]" ;; esac
    installed || die "the mail stack is not installed; run: $0 up"
    postsuper -d ALL >/dev/null 2>&1 8>&- || true
    if ((hard)) || ! dovecot_pid >/dev/null; then
        ((hard)) || log "Dovecot is not running: deleting the maildirs instead of expunging"
        kick_imap_clients
        find "$MAIL_ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    else
        local out
        out=$(doveadm expunge -A mailbox '*' all 2>&1 8>&-) || die "doveadm expunge failed: $out"
        # Folders other than the standard ones (created by a test) are deleted too.
        local user box
        while IFS=$'\t' read -r user box; do
            case $box in INBOX|Drafts|Sent|Trash|Junk|'') continue ;; esac
            doveadm mailbox delete -u "$user" -r -s "$box" >/dev/null 2>&1 8>&- || true
        done < <(doveadm -f tab mailbox list -A 2>/dev/null | tail -n +2 | sort -t$'\t' -k2,2r)
    fi
    log "wiped every mailbox$( ((hard)) && printf ' (maildirs deleted)')"
}

cmd_count() {
    need_root
    [[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 count USER [MAILBOX]"
    local user box=${2:-INBOX} out
    user=$(resolve_user "$1")
    need_dovecot_running
    out=$(doveadm -f flow mailbox status -u "$user" messages "$box" 2>&1) ||
        die "cannot read mailbox '$box' of $user: $out"
    [[ $out =~ messages=([0-9]+) ]] || die "unexpected doveadm output: $out"
    printf '%s\n' "${BASH_REMATCH[1]}"
}

cmd_inject() {
    need_root
    [[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 inject USER FILE|- [MAILBOX]"
    local user file=$2 box=${3:-INBOX} out
    user=$(resolve_user "$1")
    need_dovecot_running
    if [[ $file == - ]]; then
        out=$(doveadm save -u "$user" -m "$box" 2>&1) || die "doveadm save into $user/$box failed: $out"
    else
        [[ -f $file && -r $file ]] || die "cannot read message file '$file'"
        out=$(doveadm save -u "$user" -m "$box" <"$file" 2>&1) || die "doveadm save of $file into $user/$box failed: $out"
    fi
    log "injected ${file} into $user/$box"
}

cmd_stop_postfix() {
    need_root; take_lock
    installed || die "the mail stack is not installed; run: $0 up"
    postfix_pid >/dev/null || { log "Postfix is not running"; return 0; }
    stop_postfix
    log "Postfix stopped (Dovecot still running)"
}

cmd_start_postfix() {
    need_root; take_lock
    installed || die "the mail stack is not installed; run: $0 up"
    dovecot_pid >/dev/null || die "Dovecot is not running (start the whole stack with: $0 up)"
    postfix_pid >/dev/null || start_postfix
    wait_ready postfix
    flush_queue
    log "Postfix running"
}

cmd_restart_dovecot() {
    need_root; take_lock
    installed || die "the mail stack is not installed; run: $0 up"
    stop_dovecot
    start_dovecot
    wait_ready dovecot
    if postfix_pid >/dev/null; then
        # G2: drop Postfix's SASL connections to the old auth processes.
        postfix reload </dev/null >/dev/null 2>&1 8>&- || die "postfix reload failed"
        wait_ready postfix
        flush_queue
    fi
    log "Dovecot restarted"
}

cmd_logs() { show_logs "${1:-40}"; }

cmd_selftest() {
    need_root
    local t0; t0=$(now_ms)
    installed || die "the mail stack is not installed; run: $0 up"
    if ! command -v python3 >/dev/null 2>&1; then
        take_lock; ensure_packages python3; exec 8>&-
    fi
    local rc=0 vars
    mapfile -t vars < <(write_env)
    env "${vars[@]}" python3 - <<'PY' || rc=$?
import base64, imaplib, os, smtplib, ssl, sys, time, uuid
from email.utils import formatdate

E = os.environ
HOST = E["MAILSTACK_HOST"]
P25, P587, P465 = int(E["MAILSTACK_SMTP_PORT"]), int(E["MAILSTACK_SUBMISSION_PORT"]), int(E["MAILSTACK_SMTPS_PORT"])
P143, P993 = int(E["MAILSTACK_IMAP_PORT"]), int(E["MAILSTACK_IMAPS_PORT"])
CA = E["MAILSTACK_CA_FILE"]
GW, GWP = E["MAILSTACK_GATEWAY_USER"], E["MAILSTACK_GATEWAY_PASSWORD"]
RB, RBP = E["MAILSTACK_ROBOT_USER"], E["MAILSTACK_ROBOT_PASSWORD"]
CP, CPP = E["MAILSTACK_COPIES_USER"], E["MAILSTACK_COPIES_PASSWORD"]
OT, OTP = E["MAILSTACK_OTHER_USER"], E["MAILSTACK_OTHER_PASSWORD"]
UNKNOWN = E["MAILSTACK_UNKNOWN_USER"]
CTX = ssl.create_default_context(cafile=CA)   # verifies chain and name (IP SAN 127.0.0.1)
MARK = "mst" + uuid.uuid4().hex[:16]
T0 = time.monotonic()
failures = []

def check(name, fn):
    t = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every failure loudly and keep going
        failures.append(name)
        print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
        return False
    print(f"ok    {name} ({(time.monotonic() - t) * 1000:.0f} ms)", flush=True)
    return True

def message(tag, frm, to):
    body = ("Grüße aus dem Selbsttest, 8-bit body: é ü ß — ✓\r\n"
            f"marker {MARK}-{tag}\r\n" + "x" * 200 + "\r\n")
    head = (f"From: mailstack selftest <{frm}>\r\nTo: <{to}>\r\n"
            f"Subject: mailstack selftest {MARK}-{tag}\r\n"
            f"Date: {formatdate(localtime=False)}\r\nMessage-ID: <{MARK}.{tag}@gateway.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n")
    return (head + body).encode("utf-8")

sent = {}

def expect(cond, what):
    if not cond:
        raise AssertionError(what)

def ehlo_checks(s, port, auth_expected):
    feats = s.esmtp_features
    expect("8bitmime" in feats, f"port {port}: 8BITMIME not advertised: {sorted(feats)}")
    expect("smtputf8" not in feats, f"port {port}: SMTPUTF8 advertised (Dovecot 2.3 LMTP lacks it, G8)")
    if auth_expected is not None:
        expect(("auth" in feats) == auth_expected, f"port {port}: AUTH advertised={('auth' in feats)}, expected {auth_expected}")

def send_25():
    with smtplib.SMTP(HOST, P25, timeout=15) as s:
        s.ehlo("selftest.example")
        ehlo_checks(s, P25, False)
        expect(s.has_extn("starttls"), "port 25: STARTTLS not offered")
        raw = message("p25", RB, GW)
        refused = s.sendmail(RB, [GW], raw, mail_options=["BODY=8BITMIME"])
        expect(not refused, f"refused: {refused}")
        sent["p25"] = (GW, GWP, raw)

def send_587():
    with smtplib.SMTP(HOST, P587, timeout=15) as s:
        s.ehlo("selftest.example")
        expect(s.has_extn("starttls"), "port 587: STARTTLS not offered")
        s.starttls(context=CTX)
        s.ehlo("selftest.example")
        ehlo_checks(s, P587, True)
        s.login(GW, GWP)
        raw = message("p587", GW, RB)          # BCC copy: envelope only, no header
        refused = s.sendmail(GW, [RB, CP], raw, mail_options=["BODY=8BITMIME"])
        expect(not refused, f"refused: {refused}")
        sent["p587"] = (RB, RBP, raw)
        sent["p587-bcc"] = (CP, CPP, raw)

def send_465():
    with smtplib.SMTP_SSL(HOST, P465, context=CTX, timeout=15) as s:
        s.ehlo("selftest.example")
        ehlo_checks(s, P465, True)
        s.login(RB, RBP)
        raw = message("p465", RB, GW)
        refused = s.sendmail(RB, [GW], raw, mail_options=["BODY=8BITMIME"])
        expect(not refused, f"refused: {refused}")
        sent["p465"] = (GW, GWP, raw)

def rcpt_code(port, rcpt, login=None, tls=False):
    with smtplib.SMTP(HOST, port, timeout=15) as s:
        s.ehlo("selftest.example")
        if tls:
            s.starttls(context=CTX); s.ehlo("selftest.example")
        if login:
            s.login(*login)
        code, _ = s.mail(login[0] if login else RB)
        expect(code == 250, f"MAIL FROM got {code}")
        code, msg = s.rcpt(rcpt)
        s.rset()
        return code, msg.decode(errors="replace")

def rejected(port, rcpt, want, login=None, tls=False):
    def run():
        code, msg = rcpt_code(port, rcpt, login, tls)
        expect(code == want, f"RCPT TO:<{rcpt}> on {port}: got {code} {msg}, expected {want}")
    return run

def bad_password():
    with smtplib.SMTP(HOST, P587, timeout=15) as s:
        s.starttls(context=CTX)
        s.ehlo("selftest.example")
        # One AUTH PLAIN attempt: login() would retry with LOGIN, and each failure costs ~0.5 s.
        token = base64.b64encode(f"\0{GW}\0wrong-password".encode()).decode()
        code, resp = s.docmd("AUTH", "PLAIN " + token)
        expect(code == 535, f"bad password gave {code} {resp!r}, expected 535")

def imap_connect(mode, user, pw):
    if mode == "starttls":
        c = imaplib.IMAP4(HOST, P143, timeout=15)
        c.starttls(ssl_context=CTX)
    else:
        c = imaplib.IMAP4_SSL(HOST, P993, ssl_context=CTX, timeout=15)
    c.login(user, pw)
    return c

def find_and_check(tag, mode):
    user, pw, raw = sent[tag]
    def run():
        c = imap_connect(mode, user, pw)
        try:
            c.select("INBOX")
            deadline = time.monotonic() + 15
            subj = f"{MARK}-{tag.split('-')[0]}"
            while True:
                typ, data = c.uid("SEARCH", None, "HEADER", "Subject", subj)
                uids = data[0].split() if typ == "OK" and data and data[0] else []
                if uids:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"message {subj} not in {user}'s INBOX after 15 s (see logs)")
                time.sleep(0.05)
                c.noop()
            expect(len(uids) == 1, f"{len(uids)} copies of {subj} in {user}'s INBOX")
            typ, data = c.uid("FETCH", uids[0], "(BODY.PEEK[])")
            got = data[0][1]
            # Delivered = the client's bytes with Return-Path, Delivered-To and two Received
            # lines prepended, nothing else touched (G7).
            expect(got.endswith(raw), f"{user}: delivered bytes differ from the bytes sent")
            extra = got[: len(got) - len(raw)]
            expect(f"Delivered-To: {user}".encode() in extra, f"no Delivered-To: {user} header")
            c.uid("STORE", uids[0], "+FLAGS.SILENT", r"(\Deleted)")
            c.expunge()
        finally:
            try:
                c.logout()
            except Exception:
                pass
    return run

def imap_logins():
    for user, pw in ((GW, GWP), (RB, RBP), (CP, CPP), (OT, OTP)):
        c = imap_connect("starttls", user, pw)
        typ, _ = c.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")
        expect(typ == "OK", f"STATUS INBOX failed for {user}")
        c.logout()

def imap_bad_password():
    c = imaplib.IMAP4_SSL(HOST, P993, ssl_context=CTX, timeout=15)
    try:
        c.login(GW, "wrong-password")
    except imaplib.IMAP4.error:
        c.logout()
        return
    raise AssertionError("IMAP login with a wrong password succeeded")

check("SMTP 25: EHLO (8BITMIME, no SMTPUTF8, no AUTH), send robot -> gateway unauthenticated", send_25)
check("SMTP 587: STARTTLS (CA verified) + AUTH, send gateway -> robot + BCC copies", send_587)
check("SMTPS 465: implicit TLS + AUTH, send robot -> gateway", send_465)
check("SMTP 25: unknown user in a virtual domain rejected 550 at RCPT", rejected(P25, UNKNOWN, 550))
check("SMTP 587: unknown user rejected 550 at RCPT even with AUTH", rejected(P587, UNKNOWN, 550, (GW, GWP), True))
check("SMTP 25: relaying to an outside domain rejected 554", rejected(P25, "someone@example.invalid", 554))
check("SMTP 587: outside domain rejected 550 even with AUTH (nothing leaves)", rejected(P587, "someone@example.invalid", 550, (GW, GWP), True))
check("SMTP 587: RCPT without AUTH rejected 554", rejected(P587, RB, 554, None, True))
check("SMTP 587: wrong password rejected 535", bad_password)
check("IMAP 143 STARTTLS: all four users log in", imap_logins)
check("IMAPS 993: wrong password refused", imap_bad_password)
for tag, mode in (("p25", "imaps"), ("p587", "starttls"), ("p587-bcc", "imaps"), ("p465", "starttls")):
    if tag in sent:
        user = sent[tag][0]
        check(f"IMAP ({mode}): message sent via {tag} is in {user}'s INBOX byte-exact (then expunged)", find_and_check(tag, mode))

total = (time.monotonic() - T0) * 1000
if failures:
    print(f"\nSELFTEST FAILED: {len(failures)} check(s) failed ({total:.0f} ms):", file=sys.stderr)
    for f in failures:
        print(f"  - {f}", file=sys.stderr)
    sys.exit(1)
print(f"selftest: all checks passed in {total:.0f} ms")
PY
    if ((rc)); then
        show_logs 30
        die "selftest FAILED (see above; '$0 status' shows which service is down)"
    fi
    log "selftest passed in $(( $(now_ms) - t0 )) ms"
}

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" | sed -n '1,/^Fixed locations/p' | sed '$d'; }

CMD=${1:-help}
[[ $# -gt 0 ]] && shift
case $CMD in
    up)              cmd_up "$@" ;;
    down)            cmd_down "$@" ;;
    status)          cmd_status "$@" ;;
    env)             write_env ;;
    selftest)        cmd_selftest "$@" ;;
    wipe)            cmd_wipe "$@" ;;
    count)           cmd_count "$@" ;;
    inject)          cmd_inject "$@" ;;
    stop-postfix)    cmd_stop_postfix "$@" ;;
    start-postfix)   cmd_start_postfix "$@" ;;
    restart-dovecot) cmd_restart_dovecot "$@" ;;
    logs)            cmd_logs "$@" ;;
    help|-h|--help)  usage ;;
    *)               usage >&2; die "unknown command '$CMD'" ;;
esac
