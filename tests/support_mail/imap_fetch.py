#!/usr/bin/env python3
"""Reads messages from a mailbox of the test mail stack over IMAPS (Dovecot, port 993), for
tests/support_mail/mod.rs. The certificate is verified against the stack's CA.

usage: imap_fetch.py --user U --password P --ca CA [--host H] [--port N] [--mailbox M]
                     (--subject TEXT | --header NAME VALUE | --all) [--count-only] [--delete]

Writes every matching message, oldest first, as `MSG <octets>\\n<raw bytes>\\n`, then
`END <n>\\n`. With --count-only only `END <n>`. With --delete the matches are expunged after
being read. Any failure: a message on stderr and exit status 2.
"""
import argparse
import imaplib
import ssl
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=993)
    ap.add_argument("--mailbox", default="INBOX")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--subject")
    g.add_argument("--header", nargs=2, metavar=("NAME", "VALUE"))
    g.add_argument("--all", action="store_true")
    ap.add_argument("--count-only", action="store_true")
    ap.add_argument("--delete", action="store_true")
    a = ap.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    c = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx, timeout=20)
    try:
        c.login(a.user, a.password)
        typ, _ = c.select(a.mailbox, readonly=not a.delete)
        if typ != "OK":
            raise RuntimeError(f"SELECT {a.mailbox} failed")
        if a.all:
            crit = ["ALL"]
        elif a.subject is not None:
            crit = ["HEADER", "Subject", quote(a.subject)]
        else:
            crit = ["HEADER", a.header[0], quote(a.header[1])]
        typ, data = c.uid("SEARCH", None, *crit)
        if typ != "OK":
            raise RuntimeError(f"SEARCH {crit} failed: {data!r}")
        uids = data[0].split() if data and data[0] else []
        out = sys.stdout.buffer
        if not a.count_only:
            for uid in uids:
                typ, msg = c.uid("FETCH", uid, "(BODY.PEEK[])")
                if typ != "OK" or not msg or not isinstance(msg[0], tuple):
                    raise RuntimeError(f"FETCH {uid!r} failed: {msg!r}")
                raw = msg[0][1]
                out.write(b"MSG %d\n" % len(raw))
                out.write(raw)
                out.write(b"\n")
        if a.delete and uids:
            for i in range(0, len(uids), 500):
                chunk = b",".join(uids[i : i + 500]).decode()
                typ, data = c.uid("STORE", chunk, "+FLAGS.SILENT", r"(\Deleted)")
                if typ != "OK":
                    raise RuntimeError(f"STORE \\Deleted failed: {data!r}")
            c.expunge()
        out.write(b"END %d\n" % len(uids))
        out.flush()
    finally:
        try:
            c.logout()
        except Exception:  # noqa: BLE001 - the answer was already written
            pass
    return 0


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - report loudly to the Rust caller
        print(f"imap_fetch.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
