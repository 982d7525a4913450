#!/usr/bin/env python3
"""holdfast <-> Dovecot interoperability, with a real, private Dovecot 2.3.

(a) holdfast -> Dovecot. `holdfast deliver` stores messages for alice; a
    private Dovecot whose passdb/userdb is holdfast's DATA/users and whose
    mail_location is holdfast's Maildirs serves them over POP3. Logging in with
    alice's password proves DATA/users is a working Dovecot passwd-file. Every
    RETR must equal, byte for byte, Return-Path + Delivered-To + the original
    message (in POP3's CRLF form), and every LIST size must equal the
    CRLF-counted size that holdfast put in the W= part of the file name
    (Dovecot trusts W=). After Dovecot's session has moved the mail to cur/
    with :2,S, holdfast still lists the same messages with the same UIDs and
    fsck is clean.

(b) Dovecot -> holdfast. dovecot-lda delivers N messages into bob's Maildir;
    doveadm marks some \\Seen. `holdfast mailbox list bob --json` must list
    exactly those N files with their sizes and the S flag, and fsck must be
    clean -- also after a POP3 login has moved everything from new/ to cur/.
    Then `holdfast deliver` adds one more and Dovecot's POP3 shows N+1, the
    newest byte-identical to what holdfast stored. Finally `doveadm pw -t`
    verifies the hash in DATA/users.

Run:  /usr/bin/python3 tests/system/test_dovecot_interop.py --holdfast build/holdfast
Exit: 0 pass, 1 fail, 77 skip (Dovecot not installed).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
from hfsys import check, fail, log  # noqa: E402

ALICE_PW = "alice-Pa55:word with spaces"
BOB_PW = "b0b's secret"
SENDER = "sender@example.org"
N_LDA = 20
N_SEEN = 5

# file name: <secs>.<MESSAGEID>.<host>,S=<size>,W=<vsize>,U=<uid>[:2,FLAGS]
NAME_FIELDS = re.compile(r",([A-Za-z])=([0-9]+)")


def alice_messages():
    """(label, bytes) for holdfast -> Dovecot. Each has a unique X-Test-Id."""
    msgs = []

    def hdr(i, subject, eol=b"\n"):
        return (b"From: Someone <someone@example.net>" + eol +
                b"To: alice@example.org" + eol +
                b"Subject: " + subject + eol +
                b"X-Test-Id: alice-" + str(i).encode() + eol +
                b"Message-ID: <alice-" + str(i).encode() + b"@test.invalid>" + eol)

    msgs.append(("plain ASCII", hdr(0, b"plain") + b"\nHello Alice,\nthis is plain ASCII.\n"))
    msgs.append(("8-bit UTF-8 body and header",
                 hdr(1, "Grüße – ünïcödé ✓".encode()) +
                 b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" +
                 "Größe, naïve café, 日本語, emoji 📬\n".encode() * 3))
    msgs.append(("a 4000-octet line (RFC 5322 limit is 998)",
                 hdr(2, b"long line") + b"\n" + b"start:" + b"L" * 3994 + b"\nshort line after\n"))
    msgs.append(("lines starting with '.' (POP3 dot-stuffing)",
                 hdr(3, b"dots") + b"\n.\n..\n.hidden\n...three\nend\n"))
    crlf = b"\r\n"
    msgs.append(("CRLF line ends throughout",
                 hdr(4, b"crlf", crlf) + crlf + b"line one" + crlf + b"line two" + crlf +
                 b"." + crlf + b"last" + crlf))
    msgs.append(("no final newline", hdr(5, b"no final newline") + b"\nno newline at the end"))
    msgs.append(("NUL bytes in the body",
                 hdr(6, b"nul") + b"\nbefore\x00after\n\x00\x00\nend\n"))
    return msgs


def x_test_id(msg: bytes):
    m = re.search(rb"^X-Test-Id: (\S+)\r?$", msg, re.M)
    return m.group(1).decode() if m else None


def parse_name(name):
    """Split a holdfast/Maildir file name into (dir, base, info-flags, fields)."""
    d, _, fname = name.partition("/")
    base, _, info = fname.partition(":")
    flags = info[2:] if info.startswith("2,") else ""
    fields = {k: int(v) for k, v in NAME_FIELDS.findall(base)}
    return d, base, flags, fields


def check_listing_shape(entries, who):
    keys = {"uid", "message_id", "size", "flags", "name"}
    for e in entries:
        if not isinstance(e, dict) or not keys <= set(e):
            fail(f"{who}: listing entry lacks keys {keys - set(e) if isinstance(e, dict) else keys}: {e!r}")
    uids = [e["uid"] for e in entries]
    check(all(isinstance(u, int) and u > 0 for u in uids) and len(set(uids)) == len(uids),
          f"{who}: UIDs are distinct positive integers", repr(uids))
    mids = [e["message_id"] for e in entries]
    check(all(isinstance(m, str) and len(m) == 26 for m in mids) and len(set(mids)) == len(mids),
          f"{who}: message_ids are distinct 26-character strings", repr(mids))


def part_a(hf, data, tmp, mu):
    log("\n== (a) holdfast deliver -> Dovecot POP3 ==")
    hf.user_add("alice", ALICE_PW)
    r = hf.run("user", "list")
    check(b"alice" in r.stdout, "`user list` shows alice")

    delivered = {}  # test id -> (label, expected stored bytes)
    for label, msg in alice_messages():
        r = hf.deliver("alice", msg, SENDER, expect=None)
        tid = x_test_id(msg)
        if r.returncode == 0:
            delivered[tid] = (label, hfsys.expected_stored(msg, "alice", SENDER))
            log(f"  ok   deliver {label}: exit 0")
        elif label.startswith("NUL") and r.returncode == hfsys.EX_DATAERR:
            # MISSION invariant 9 allows a clear rejection of NUL bytes.
            log(f"  note deliver {label}: rejected with 65 (EX_DATAERR) - allowed; "
                f"Dovecot itself serves NUL bytes unchanged over POP3")
        else:
            fail(f"deliver {label} exited {r.returncode}\nstderr: {r.stderr.decode(errors='replace')}")

    # What holdfast wrote, read straight from disk.
    listing = hf.mailbox_list("alice")
    check_listing_shape(listing, "alice")
    check(len(listing) == len(delivered), f"mailbox list alice has {len(delivered)} messages",
          f"got {len(listing)}: {listing!r}")
    maildir = os.path.join(data, "mail", "alice")
    by_tid = {}
    for e in listing:
        path = os.path.join(maildir, e["name"])
        if not os.path.isfile(path):
            fail(f"listed name {e['name']!r} is not a file in {maildir}")
        with open(path, "rb") as f:
            content = f.read()
        tid = x_test_id(content)
        if tid not in delivered:
            fail(f"{e['name']}: unexpected content {content[:200]!r}")
        by_tid[tid] = e
        label, want = delivered[tid]
        check(content == want, f"on disk, byte-exact: {label}",
              f"want {want[:300]!r}...\ngot  {content[:300]!r}...")
        d, base, flags, fields = parse_name(e["name"])
        check(d in ("new", "cur") and e["size"] == len(want) == os.path.getsize(path),
              f"  size {len(want)} in listing and on disk; in {d}/")
        check(fields.get("S") == len(want) and fields.get("W") == hfsys.vsize(want),
              f"  file name carries S={len(want)} and W={hfsys.vsize(want)} (Dovecot trusts these)",
              f"name {e['name']!r}")
        check(fields.get("U") == e["uid"] and e["message_id"] in base,
              f"  file name carries U={e['uid']} and the message id", f"name {e['name']!r}")
    hf.fsck("alice")
    log("  ok   holdfast fsck alice: exit 0")

    dv = hfsys.Dovecot(os.path.join(tmp, "dovecot-a"), data, mu)
    with dv:
        p = dv.pop3("alice", ALICE_PW)
        log("  ok   POP3 login as alice with her password (DATA/users is a Dovecot passwd-file)")
        try:
            count, _ = p.stat()
            check(count == len(delivered), f"POP3 STAT: {len(delivered)} messages", f"got {count}")
            sizes = hfsys.pop3_list(p)
            seen = set()
            for n in range(1, count + 1):
                wire = hfsys.pop3_retr_raw(p, n)
                tid = x_test_id(wire)
                if tid not in delivered or tid in seen:
                    fail(f"RETR {n}: unknown or duplicate message {wire[:200]!r}")
                seen.add(tid)
                label, want = delivered[tid]
                check(wire == hfsys.pop3_wire_form(want), f"RETR {n} byte-exact (CRLF form): {label}",
                      f"want {hfsys.pop3_wire_form(want)[:300]!r}\ngot  {wire[:300]!r}")
                check(sizes[n] == hfsys.vsize(want), f"  LIST {n} size {sizes[n]} = CRLF size of stored bytes",
                      f"expected {hfsys.vsize(want)}")
            p.quit()  # RETR'd mail becomes \Seen: Dovecot renames it to cur/...:2,S
        finally:
            p.close()

    log("  -- after Dovecot's session (mail renamed by Dovecot) --")
    cur = sorted(os.listdir(os.path.join(maildir, "cur")))
    check(len(cur) == len(delivered) and all(n.endswith(":2,S") for n in cur),
          "Dovecot moved every message to cur/ with :2,S", repr(cur))
    after = hf.mailbox_list("alice")
    check(sorted((e["uid"], e["message_id"]) for e in after) ==
          sorted((e["uid"], e["message_id"]) for e in listing),
          "holdfast lists the same messages with the same UIDs", f"before {listing!r}\nafter {after!r}")
    check(all(e["name"].startswith("cur/") and "S" in e["flags"] for e in after),
          "holdfast sees them in cur/ with flag S", repr(after))
    hf.fsck("alice")
    log("  ok   holdfast fsck alice after Dovecot's renames: exit 0")


def lda_message(i):
    body = f"Message {i} delivered by dovecot-lda.\n".encode()
    if i % 4 == 1:
        body += "UTF-8: Zürich ✓\n".encode() * 10
    if i % 4 == 2:
        body += (b"x" * 76 + b"\n") * 200
    if i % 4 == 3:
        return (f"From: lda@example.net\r\nTo: bob@example.org\r\nSubject: lda {i}\r\n"
                f"X-Test-Id: bob-{i}\r\n\r\n").encode() + body.replace(b"\n", b"\r\n")
    return (f"From: lda@example.net\nTo: bob@example.org\nSubject: lda {i}\n"
            f"X-Test-Id: bob-{i}\n\n").encode() + body


def maildir_files(maildir):
    out = {}
    for d in ("new", "cur"):
        for n in os.listdir(os.path.join(maildir, d)):
            out[f"{d}/{n}"] = os.path.getsize(os.path.join(maildir, d, n))
    return out


def check_bob_listing(hf, maildir, seen_bases, who):
    entries = hf.mailbox_list("bob")
    check_listing_shape(entries, who)
    files = maildir_files(maildir)
    check(len(entries) == N_LDA and len(files) == N_LDA,
          f"{who}: mailbox list shows exactly {N_LDA} messages ({len(files)} files on disk)",
          f"listing {len(entries)}: {entries!r}\nfiles {sorted(files)}")
    check(sorted(e["name"] for e in entries) == sorted(files),
          f"{who}: listed names are exactly the files in new/ and cur/",
          f"listed {sorted(e['name'] for e in entries)}\nfiles {sorted(files)}")
    check(all(e["size"] == files[e["name"]] for e in entries),
          f"{who}: every size equals the file size")
    bad = [e for e in entries if ("S" in e["flags"]) != (parse_name(e["name"])[1] in seen_bases)]
    check(not bad, f"{who}: flag S exactly on the {N_SEEN} messages doveadm marked \\Seen", repr(bad))
    return entries


def part_b(hf, data, tmp, mu):
    log("\n== (b) dovecot-lda + doveadm -> holdfast ==")
    hf.user_add("bob", BOB_PW)
    maildir = os.path.join(data, "mail", "bob")
    dv = hfsys.Dovecot(os.path.join(tmp, "dovecot-b"), data, mu, extra_conf="mail_fsync = always\n")
    with dv:
        for i in range(1, N_LDA + 1):
            dv.lda("bob", lda_message(i), "lda-sender@example.net")
        log(f"  ok   dovecot-lda delivered {N_LDA} messages to bob")
        dv.doveadm("flags", "add", "\\Seen", "mailbox", "INBOX", "uid", f"1:{N_SEEN}", "-u", "bob")
        r = dv.doveadm("-f", "tab", "fetch", "-u", "bob", "uid flags", "mailbox", "INBOX")
        seen_uids = [l.split("\t")[0] for l in r.stdout.splitlines()[1:] if "\\Seen" in l]
        check(seen_uids == [str(u) for u in range(1, N_SEEN + 1)],
              f"doveadm: uids 1..{N_SEEN} are \\Seen", r.stdout)
        # doveadm renames flagged mail in place (new/...:2,S); a later POP3
        # login moves everything to cur/.
        files = maildir_files(maildir)
        seen_bases = {parse_name(n)[1] for n in files if parse_name(n)[2] == "S"}
        check(len(seen_bases) == N_SEEN, f"{N_SEEN} files carry :2,S", repr(sorted(files)))

        before = check_bob_listing(hf, maildir, seen_bases, "bob, as Dovecot left it")
        hf.fsck("bob")
        log("  ok   holdfast fsck bob: exit 0")

        p = dv.pop3("bob", BOB_PW)
        try:
            count, _ = p.stat()
            check(count == N_LDA, f"POP3 as bob: {N_LDA} messages", f"got {count}")
            p.quit()
        finally:
            p.close()
        check(not os.listdir(os.path.join(maildir, "new")), "Dovecot's POP3 login moved new/ to cur/")
        after = check_bob_listing(hf, maildir, seen_bases, "bob, after the move to cur/")
        base_uid = lambda es: sorted((parse_name(e["name"])[1], e["uid"], e["message_id"]) for e in es)
        check(base_uid(before) == base_uid(after),
              "UIDs and message ids are unchanged by Dovecot's renames",
              f"before {base_uid(before)}\nafter {base_uid(after)}")
        hf.fsck("bob")
        log("  ok   holdfast fsck bob after the move: exit 0")

        # holdfast delivers one more; Dovecot must see N+1.
        msg = (b"From: last@example.net\nTo: bob@example.org\nSubject: from holdfast\n"
               b"X-Test-Id: bob-holdfast\n\nDelivered by holdfast after Dovecot's mail.\n.\n")
        hf.deliver("bob", msg, SENDER)
        want = hfsys.expected_stored(msg, "bob", SENDER)
        entries = hf.mailbox_list("bob")
        check(len(entries) == N_LDA + 1, f"holdfast lists {N_LDA + 1} messages for bob")
        newest = max(entries, key=lambda e: e["uid"])
        check(max(e["uid"] for e in after) < newest["uid"], "the new message has the highest UID")
        with open(os.path.join(maildir, newest["name"]), "rb") as f:
            check(f.read() == want, "holdfast stored it byte-exactly")

        p = dv.pop3("bob", BOB_PW)
        try:
            count, _ = p.stat()
            check(count == N_LDA + 1, f"POP3 as bob: {N_LDA + 1} messages", f"got {count}")
            wire = hfsys.pop3_retr_raw(p, count)
            check(wire == hfsys.pop3_wire_form(want), "POP3 RETR of the newest equals what holdfast stored",
                  f"want {hfsys.pop3_wire_form(want)!r}\ngot  {wire[:400]!r}")
            # Dovecot's view of the older ones is untouched.
            for n in (1, N_LDA):
                w = hfsys.pop3_retr_raw(p, n)
                check(x_test_id(w) == f"bob-{n}" and w.startswith(b"From: lda@example.net\r\n"),
                      f"POP3 RETR {n} is still dovecot-lda's message bob-{n}", repr(w[:200]))
            p.rset()
            p.quit()
        finally:
            p.close()

    log("\n== doveadm pw verifies holdfast's password hash ==")
    for name, pw in (("alice", ALICE_PW), ("bob", BOB_PW)):
        h = hf.users_file_hash(name)
        check(h is not None and h.startswith("{CRYPT}$y$"), f"DATA/users has a {{CRYPT}}$y$ hash for {name}",
              repr(h))
        r = dv.doveadm("pw", "-t", h, "-p", pw, expect=None)
        check(r.returncode == 0 and "(verified)" in r.stdout, f"doveadm pw -t <{name}'s hash> -p <password>: (verified)",
              r.stdout + r.stderr)
        r = dv.doveadm("pw", "-t", h, "-p", pw + "x", expect=None)
        check(r.returncode != 0 and "(verified)" not in r.stdout, f"  and a wrong password is not verified")


def main(args):
    missing = hfsys.have_dovecot()
    if missing:
        hfsys.skip(f"Dovecot is not installed ({', '.join(missing)} missing); "
                   f"scripts/bootstrap.sh installs dovecot-core and dovecot-pop3d")
    mu = hfsys.mail_user()
    log(f"holdfast: {args.holdfast}\nmail user: {mu}")
    with hfsys.TempDir(prefix="hf-dovecot-", keep=args.keep) as td:
        data = td.sub("data")
        os.makedirs(data)
        mu.chown_tree(data)
        hf = hfsys.Holdfast(args.holdfast, data, mu, scratch=td.sub("bin"))
        part_a(hf, data, td.path, mu)
        part_b(hf, data, td.path, mu)


if __name__ == "__main__":
    hfsys.run_test(main, description=__doc__)
