#!/usr/bin/env python3
"""`holdfast serve` (LMTP, RFC 2033) against real clients and bad input.

A private server on 127.0.0.1:<free port> (and a UNIX socket) over a temp
data directory with users alice, bob, carol. What is stored for an LMTP
delivery is, byte for byte,
    Return-Path: <SENDER>  EOL  Delivered-To: <rcpt address as given>  EOL  DATA
(EOL = the line ending of the message's first line; DATA after
dot-unstuffing). Mail is filed asynchronously after the 250, so every check
polls `holdfast mailbox list USER --json` (up to 20 s) and reads the file it
names; size and sha256 in the listing must match the file.

(a) swaks --protocol LMTP: --body (the message reconstructed from swaks's
    transcript), and --data with 8-bit bytes, a NUL, a 5000-byte line and
    lines starting with '.', to two recipients (one reply each); exit 0; the
    message lands exactly once per mailbox, byte-exact. swaks to an unknown
    user only: non-zero exit, nothing stored.
(b) Python smtplib.LMTP: alice+bob+unknown in one message (550 at RCPT for
    the unknown one, 250 for each of the others, one copy each); several
    messages on one connection (also user+tag and the null sender); a fully
    pipelined raw batch (5 messages in one write); dot-stuffing round trip;
    a 5 MB message; the UNIX socket; with max_message_size = 100000: LHLO
    advertises SIZE 100000, MAIL SIZE= above it gets 552, a 150 KB body gets
    552 5.3.4 for each recipient and is not stored, 100000 bytes pass,
    100001 do not.
    NOTE smtplib.LMTP is smtplib.SMTP with LHLO: data()/sendmail() read only
    the FIRST per-recipient reply after the final dot; the test reads the
    others with getreply() (hflmtp.lmtp_send), as an LMTP client must.
(c) Postfix's smtp-source -L -s 4 -m 200: exactly 200 messages in carol's
    mailbox, all whole (identical but for Date/Message-Id, which are unique).
(d) Bad input on raw sockets: bare-LF client (stored with LF), NUL, bare CR,
    non-ASCII and a 10 KB command line, commands out of order, pipelined
    garbage (20 errors -> 421 and close), too much before LHLO (554), VRFY,
    a client that disconnects in the middle of DATA (nothing stored), one that
    disconnects right after the final dot (at most one copy) -- after each, a
    fresh connection is served normally and the server still runs.
(e) SIGTERM: an idle session keeps a draining server up, new connections are
    refused at once, the session can still finish (a 250 there is still
    delivered), and QUIT lets the server exit 0 promptly; a server with no
    session exits 0 promptly; a second SIGTERM stops at once, exit 0.

Run:  /usr/bin/python3 tests/system/test_lmtp_clients.py --holdfast build/holdfast
Exit: 0 pass, 1 fail, 77 skip (swaks or smtp-source missing).
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log  # noqa: E402
from hflmtp import CRLF, expected_stored, read_mailbox, wait_for, with_token  # noqa: E402

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SENDER = "bob@example.org"
SAN = hflmtp.sanitized()

_seq = [0]


def token(tag):
    _seq[0] += 1
    return f"TOK-{tag}-{os.getpid()}-{_seq[0]}-{time.monotonic_ns()}".encode()


def simple_body(tok: bytes, extra=b""):
    return (b"From: Bob <bob@example.org>\r\nTo: alice@localhost\r\nSubject: " + tok + CRLF +
            b"X-Token: " + tok + CRLF + CRLF + b"Hello.\r\n" + extra)


def expect_one(hf, user, tok, want, what):
    """Wait until the message with tok is in user's mailbox; exactly one copy,
    equal to want."""
    msgs = wait_for(hf, user, lambda m: with_token(m, tok))
    found = with_token(msgs, tok)
    check(len(found) == 1, f"{what}: exactly one copy in {user}'s mailbox",
          f"found {len(found)} copies (token {tok!r})")
    got = found[0][1]
    check(got == want, f"{what}: {user}'s copy is byte-exact ({len(want)} bytes)",
          hflmtp.describe_diff(want, got))
    return found[0][0]


def swaks(port, *args, timeout=60):
    cmd = [SWAKS, "--protocol", "LMTP", "--server", f"127.0.0.1:{port}", "--timeout", "20"] + list(args)
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"swaks hung: {' '.join(cmd)}")


def swaks_data_from_transcript(out: bytes) -> bytes:
    """The message swaks sent, rebuilt from its transcript (' -> ' lines
    between the 354 and the lone '.'), unstuffed, CRLF line ends."""
    lines = out.split(b"\n")
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith(b"<-  354"))
    except StopIteration:
        fail(f"no 354 in swaks transcript:\n{out.decode(errors='replace')}")
    body = b""
    for ln in lines[start + 1:]:
        if ln.endswith(b"\r"):  # swaks prints the CRLF it sent
            ln = ln[:-1]
        if not ln.startswith(b" -> "):
            fail(f"unexpected transcript line inside DATA: {ln!r}")
        text = ln[4:]
        if text == b".":
            return body
        if text.startswith(b"."):
            text = text[1:]
        body += text + CRLF
    fail("no end of DATA in swaks transcript")


# ---------------------------------------------------------------------------


def part_a(hf, srv, tmp):
    log("\n== (a) swaks --protocol LMTP ==")
    port = srv.port
    tok = token("swaks-body")
    r = swaks(port, "--to", "alice@localhost", "--from", SENDER, "--body", "hello from swaks " + tok.decode())
    out = r.stdout + r.stderr
    check(r.returncode == 0, "swaks --body: exit 0", out.decode(errors="replace")[-3000:])
    check(re.search(rb"<-  250 2\.0\.0 <alice@localhost> \S+ accepted", out) is not None,
          "swaks --body: per-recipient reply '250 2.0.0 <alice@localhost> <id> accepted'")
    sent = swaks_data_from_transcript(out)
    expect_one(hf, "alice", tok, expected_stored(sent, SENDER, "alice@localhost"), "swaks --body")

    tok = token("swaks-8bit")
    msg = (b"From: =?utf-8?q?B=C3=B6b?= <bob@example.org>\r\nTo: alice@localhost, bob@localhost\r\n"
           b"Subject: 8-bit \xc3\xa4\xc3\xb6\xc3\xbc \xe2\x9c\x93 " + tok + CRLF +
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n" + CRLF +
           "Grüße, naïve café, 日本語 📬\r\n".encode() +
           b"raw high bytes \x80\x81\xfe\xff and a NUL \x00 here\r\n" +
           b"long:" + b"L" * 4995 + CRLF +
           b".leading dot\r\n..two dots\r\n.\r\nafter a lone dot line\r\n"
           b"last line " + tok)
    # swaks ends the DATA with CRLF . CRLF after the file's last byte (and adds
    # a CRLF of its own even after a final CRLF): so the file has none.
    path = os.path.join(tmp, "8bit.eml")
    with open(path, "wb") as f:
        f.write(msg)
    r = swaks(port, "--to", "alice@localhost,bob@localhost", "--from", SENDER, "--data", "@" + path)
    out = r.stdout + r.stderr
    check(r.returncode == 0, "swaks --data (8-bit, NUL, 5000-byte line, dots) to alice,bob: exit 0",
          out.decode(errors="replace")[-3000:])
    replies = re.findall(rb"<-  250 2\.0\.0 <(\S+)> \S+ accepted", out)
    check(replies == [b"alice@localhost", b"bob@localhost"],
          "swaks saw one 250 per recipient after DATA, in RCPT order", repr(replies))
    sent = swaks_data_from_transcript(r.stdout)
    check(sent == msg + CRLF, "swaks's transcript shows the file's bytes (plus the final CRLF) were sent",
          hflmtp.describe_diff(msg + CRLF, sent))
    for user in ("alice", "bob"):
        expect_one(hf, user, tok, expected_stored(msg + CRLF, SENDER, f"{user}@localhost"), f"swaks --data -> {user}")

    tok = token("swaks-unknown")
    r = swaks(port, "--to", "nobody@localhost", "--from", SENDER, "--body", tok.decode())
    out = r.stdout + r.stderr
    check(r.returncode != 0 and b"<** 550 5.1.1" in out,
          f"swaks to an unknown user only: RCPT 550 5.1.1, swaks exits non-zero ({r.returncode})",
          out.decode(errors="replace")[-2000:])
    check(not os.path.exists(os.path.join(hf.data, "mail", "nobody")), "no mailbox was created for 'nobody'")


def part_b(hf, srv, tmp, binary):
    log("\n== (b) Python smtplib.LMTP ==")
    port = srv.port

    # b1: three recipients, one unknown.
    tok = token("multi")
    body = simple_body(tok)
    c = hflmtp.connect(port)
    refused = c.sendmail(SENDER, ["alice@localhost", "bob@localhost", "nobody@localhost"], body)
    check(set(refused) == {"nobody@localhost"} and refused["nobody@localhost"][0] == 550
          and refused["nobody@localhost"][1].startswith(b"5.1.1"),
          "sendmail(alice, bob, nobody) refuses only nobody, with 550 5.1.1", repr(refused))
    # sendmail consumed alice's reply; bob's is still on the wire.
    code, text = c.getreply()
    check(code == 250 and text.startswith(b"2.0.0 <bob@localhost>") and text.endswith(b"accepted"),
          "second per-recipient reply (read with getreply()): 250 2.0.0 <bob@localhost> <id> accepted",
          f"{code} {text!r}")
    check(c.noop()[0] == 250, "the reply stream is in step afterwards (NOOP -> 250)")
    c.quit()
    for user in ("alice", "bob"):
        expect_one(hf, user, tok, expected_stored(body, SENDER, f"{user}@localhost"), f"multi-recipient -> {user}")

    # b2: several messages on one connection, through lmtp_send (all replies read).
    log("  -- 12 messages on one connection (incl. user+tag and the null sender)")
    c = hflmtp.connect(port)
    sent = []
    variants = [("alice@localhost",), ("bob@localhost",), ("alice@localhost", "bob@localhost"),
                ("alice+lists@localhost",), ("Bob+X@LOCALHOST",), ("bob@localhost", "alice@localhost")]
    for i in range(12):
        rcpts = variants[i % len(variants)]
        sender = "" if i == 5 else SENDER
        tok = token(f"seq{i}")
        body = simple_body(tok, b"message %d of 12\r\n" % i)
        rr, final = hflmtp.lmtp_send(c, sender, rcpts, body)
        codes = [final.get(r, (None,))[0] for r in rcpts]
        if codes != [250] * len(rcpts):
            fail(f"message {i} to {rcpts}: replies {rr} / {final}")
        sent.append((tok, sender, rcpts, body))
    check(c.noop()[0] == 250, "12 transactions on one connection, every recipient 250, NOOP still in step")
    c.quit()
    for tok, sender, rcpts, body in sent:
        for addr in rcpts:
            user = addr.split("@")[0].split("+")[0].lower()
            expect_one(hf, user, tok, expected_stored(body, sender, addr), f"{tok.decode()[:14]} -> {addr}")

    # b3: fully pipelined: 5 messages in one write.
    log("  -- 5 messages pipelined in a single write")
    bodies = []
    wire = b"LHLO pipe.test\r\n"
    for i in range(5):
        tok = token(f"pipe{i}")
        body = simple_body(tok, b".dot line in pipelined message\r\n")
        bodies.append((tok, body))
        wire += (b"MAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n" +
                 hflmtp.dot_stuff(body) + b".\r\n")
    wire += b"QUIT\r\n"
    with hflmtp.RawLmtp(port) as rc:
        rc.expect(220, "greeting")
        rc.send(wire)
        codes = [rc.reply()[0] for _ in range(1 + 5 * 4 + 1)]
    want = [250] + [250, 250, 354, 250] * 5 + [221]
    check(codes == want, "pipelined replies in order: LHLO, 5x(MAIL, RCPT, 354, 250), 221", repr(codes))
    for tok, body in bodies:
        expect_one(hf, "alice", tok, expected_stored(body, SENDER, "alice@localhost"), f"pipelined {tok.decode()[:14]}")

    # b4: dot-stuffing round trip.
    tok = token("dots")
    body = (b"Subject: dots " + tok + b"\r\n\r\n.\r\n..\r\n...\r\n.hidden\r\n..two\r\n"
            b" .space first\r\nmid.dle\r\n.\r\nlast line is a dot:\r\n.\r\n")
    c = hflmtp.connect(port)
    rr, final = hflmtp.lmtp_send(c, SENDER, ["alice@localhost"], body)
    c.quit()
    check(final.get("alice@localhost", (0,))[0] == 250, "dot-stuffed message accepted")
    expect_one(hf, "alice", tok, expected_stored(body, SENDER, "alice@localhost"),
               "dot-stuffing round trip (lines '.', '..', '.hidden', last line '.')")

    # b5: a 5 MB message.
    size = (5 << 20) if not SAN else (2 << 20)
    tok = token("big")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+*/0123456789\r\n"  # 80
    head = b"Subject: big " + tok + b"\r\nX-Token: " + tok + b"\r\n\r\n"
    body = head + line * ((size - len(head)) // len(line)) + b"end " + tok + CRLF
    t0 = time.monotonic()
    c = hflmtp.connect(port, timeout=120)
    rr, final = hflmtp.lmtp_send(c, SENDER, ["bob@localhost"], body)
    c.quit()
    took = time.monotonic() - t0
    check(final.get("bob@localhost", (0,))[0] == 250, f"{len(body)}-byte message accepted in {took:.2f}s")
    want = expected_stored(body, SENDER, "bob@localhost")
    msgs = wait_for(hf, "bob", lambda m: with_token(m, tok))
    found = with_token(msgs, tok)
    check(len(found) == 1, "big message: exactly one copy in bob's mailbox", f"{len(found)} copies")
    check(found[0][1] == want, f"big message byte-exact ({len(want)} bytes, sha256 {hflmtp.sha256_hex(want)[:16]}...)",
          f"stored {len(found[0][1])} bytes, sha256 {hflmtp.sha256_hex(found[0][1])}")

    # b6: the UNIX socket.
    tok = token("unix")
    body = simple_body(tok)
    c = smtplib.LMTP(srv.unix_path, timeout=30)
    c.ehlo("unix.test")
    rr, final = hflmtp.lmtp_send(c, SENDER, ["alice@localhost"], body)
    c.quit()
    check(final.get("alice@localhost", (0,))[0] == 250, f"over the UNIX socket {srv.unix_path}: 250")
    expect_one(hf, "alice", tok, expected_stored(body, SENDER, "alice@localhost"), "UNIX socket delivery")

    part_b_limits(tmp, binary)


def part_b_limits(tmp, binary):
    log("\n  -- size limit: [delivery] max_message_size = 100000 (a second server)")
    data = os.path.join(tmp, "data-limit")
    hf = hfsys.Holdfast(binary, data)
    hf.user_add("alice", "pw-a")
    hf.user_add("bob", "pw-b")
    hflmtp.write_config(data, "[delivery]\nmax_message_size = 100000\n[lmtp]\nbare_lf = \"keep\"\n")
    with hflmtp.Server(binary, data, os.path.join(tmp, "limit.log")) as srv:
        srv.start()
        c = hflmtp.connect(srv.port)
        check(c.has_extn("size") and c.esmtp_features.get("size") == "100000", "LHLO advertises SIZE 100000",
              repr(c.esmtp_features))
        code, text = c.mail(SENDER, ["SIZE=200000"])
        check(code == 552 and text.startswith(b"5.3.4"), "MAIL FROM SIZE=200000: 552 5.3.4", f"{code} {text!r}")
        c.rset()

        def sized(tok, n):
            head = b"Subject: sized " + tok + b"\r\n\r\n"
            filler = n - len(head) - 2
            body = head + (b"y" * 70 + CRLF) * (filler // 72) + b"z" * (filler % 72) + CRLF
            assert len(body) == n, (len(body), n)
            return body

        over_tok = token("over")
        rr, final = hflmtp.lmtp_send(c, SENDER, ["alice@localhost", "bob@localhost"], sized(over_tok, 150000))
        ok = all(final.get(r, (0, b""))[0] == 552 and final[r][1].startswith(b"5.3.4")
                 for r in ("alice@localhost", "bob@localhost"))
        check(ok, "150000-byte body, no SIZE=: 552 5.3.4 for each of the two recipients", repr(final))
        check(c.noop()[0] == 250, "the session goes on after the 552s (NOOP 250)")
        at_tok = token("at-limit")
        at_body = sized(at_tok, 100000)
        rr, final = hflmtp.lmtp_send(c, SENDER, ["alice@localhost", "bob@localhost"], at_body)
        check([final.get(r, (0,))[0] for r in ("alice@localhost", "bob@localhost")] == [250, 250],
              "exactly 100000 bytes: 250 for both", repr(final))
        over1_tok = token("over-by-1")
        rr, final = hflmtp.lmtp_send(c, SENDER, ["alice@localhost"], sized(over1_tok, 100001))
        check(final.get("alice@localhost", (0,))[0] == 552, "100001 bytes: 552", repr(final))
        c.quit()
        for user in ("alice", "bob"):
            expect_one(hf, user, at_tok, expected_stored(at_body, SENDER, f"{user}@localhost"),
                       f"100000-byte message -> {user}")
        time.sleep(0.5)
        for user in ("alice", "bob"):
            msgs = read_mailbox(hf, user)
            check(len(msgs) == 1 and not with_token(msgs, over_tok) and not with_token(msgs, over1_tok),
                  f"{user}: only the message within the limit is stored", repr([e['name'] for e, _ in msgs]))
        accepted = srv.events("accepted")
        check(len(accepted) == 1, "the server logged exactly one event=accepted (the rejected ones never reached the spool)",
              "\n".join(accepted))
        log("  -- lmtp.bare_lf = \"keep\": bare LFs stored as sent; smuggling still cannot end the data")
        tok = token("barelf")
        body = b"Subject: bare LF " + tok + b"\nX-Token: " + tok + b"\n\nline one\n..stuffed\nlast\n"
        with hflmtp.RawLmtp(srv.port) as c:
            c.expect(220, "greeting")
            c.send(b"LHLO lf.test\n")
            c.expect(250, "LHLO with a bare LF")
            c.send(b"MAIL FROM:<" + SENDER.encode() + b">\nRCPT TO:<alice@localhost>\nDATA\n")
            c.expect(250, "MAIL with a bare LF")
            c.expect(250, "RCPT with a bare LF")
            c.expect(354, "DATA with a bare LF")
            c.send(body + b"\r\n.\r\n")
            c.expect(250, "message ended by CRLF . CRLF")
            c.send(b"QUIT\n")
            c.expect(221, "QUIT")
        unstuffed = body.replace(b"\n..stuffed", b"\n.stuffed") + b"\r\n"
        expect_one(hf, "alice", tok, expected_stored(unstuffed, SENDER, "alice@localhost"),
                   "bare-LF message stored with LF line ends, headers added with LF")
        smuggling(hf, srv.port, expect_refused=False)
        rc, took = srv.stop()
        check(rc == 0, f"SIGTERM: exit 0 ({took:.2f}s)", srv.log_tail())
        check(not srv.sanitizer_reports(), "no sanitizer reports in this server's log", "\n".join(srv.sanitizer_reports()))


def part_c(hf, srv):
    log("\n== (c) Postfix smtp-source -L ==")
    n = 200 if not SAN else 60
    sessions = 4
    cmd = [SMTP_SOURCE, "-L", "-s", str(sessions), "-m", str(n), "-l", "2000",
           "-t", "carol@localhost", "-f", SENDER, f"127.0.0.1:{srv.port}"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        fail(f"smtp-source hung: {' '.join(cmd)}")
    took = time.monotonic() - t0
    check(r.returncode == 0 and not r.stderr.strip(), f"{' '.join(cmd[:-1])} ...: exit 0, no errors ({took:.2f}s)",
          f"exit {r.returncode}\nstderr: {r.stderr.decode(errors='replace')[-2000:]}")
    listing = hflmtp.wait_count(hf, "carol", n)
    time.sleep(0.5)  # anything extra (a duplicate) would show up now
    msgs = read_mailbox(hf, "carol")
    check(len(msgs) == n, f"exactly {n} messages in carol's mailbox", f"got {len(msgs)} (earlier poll: {len(listing)})")
    norm = set()
    mids = set()
    for e, content in msgs:
        m = re.search(rb"^Message-Id: (<[^>\r\n]*>)\r$", content, re.M)
        if not m:
            fail(f"{e['name']}: no Message-Id header: {content[:300]!r}")
        mids.add(m.group(1))
        x = re.sub(rb"^(Message-Id|Date): [^\r\n]*\r$", rb"\1: X\r", content, flags=re.M)
        norm.add(x)
    check(len(mids) == n, f"{n} distinct Message-Ids (no message twice)", f"{len(mids)} distinct")
    check(len(norm) == 1, "all messages are whole: identical but for Date and Message-Id",
          f"{len(norm)} different shapes; sizes {sorted(set(e['size'] for e, _ in msgs))}")
    sample = next(iter(norm))
    check(sample.startswith(b"Return-Path: <bob@example.org>\r\nDelivered-To: carol@localhost\r\nFrom: <bob@example.org>\r\n")
          and sample.endswith(CRLF) and len(sample) > 2000,
          f"each is Return-Path + Delivered-To + smtp-source's message ({len(sample)} bytes, CRLF-terminated)",
          repr(sample[:300]))


def smuggling(hf, port, expect_refused):
    """SMTP smuggling (CVE-2023-51764 class): a second transaction hidden
    behind an end of data that is not CRLF.CRLF. Data ends only at CRLF . CRLF,
    so the message reaches alice whole (or, with bare LFs refused, is refused
    whole) and nothing ever reaches bob."""
    for end in (b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r"):
        tok, forged = token("smuggle"), token("forged")
        body = (b"Subject: smuggled " + tok + b"\r\n\r\nhello" + end +
                b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n"
                b"Subject: forged " + forged + b"\r\n\r\nforged\r\n")
        with hflmtp.RawLmtp(port) as c:
            c.expect(220, "greeting")
            c.send(b"LHLO smuggler.test\r\nMAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n")
            for what in ("LHLO", "MAIL", "RCPT"):
                c.expect(250, what)
            c.expect(354, "DATA")
            c.send(body + b".\r\nQUIT\r\n")
            code, lines = c.reply()
            bare_lf = re.search(rb"(?<!\r)\n", end) is not None
            if expect_refused and bare_lf:
                check(code == 550, f"smuggling with {end!r}: refused whole (550)", repr(lines))
            else:
                check(code == 250, f"smuggling with {end!r}: one message, 250", repr(lines))
            c.expect(221, "QUIT right after: nothing was read as commands")
        if code == 250:
            # The '.' after a line end is dot-unstuffed (RFC 5321 4.5.2) like
            # any other line's; in "\r.\r" it starts no line.
            stored = body if end == b"\r.\r" else body.replace(end, end.replace(b".", b"", 1))
            expect_one(hf, "alice", tok, expected_stored(stored, SENDER, "alice@localhost"),
                       f"smuggling with {end!r}: alice's message, smuggled text included")
            check_received_line(hf, "alice", tok, b"smuggler.test")
        time.sleep(0.2)
        check(not with_token(read_mailbox(hf, "bob"), forged), f"smuggling with {end!r}: nothing reached bob")


def check_received_line(hf, user, tok, helo):
    """The raw file has holdfast's RFC 5321 4.4 Received: line right below
    Return-Path:/Delivered-To:, naming the LHLO, the client and the MessageId."""
    for e in hf.mailbox_list(user):
        with open(os.path.join(hf.data, "mail", user, e["name"]), "rb") as f:
            raw = f.read()
        if tok not in raw:
            continue
        head = raw.split(b"\r\n", 2)
        rest = head[2] if len(head) == 3 else b""
        want = (b"Received: from " + helo + b" ([127.0.0.1])\r\n\tby ")
        check(rest.startswith(want) and (b"(holdfast) with LMTP id " + e["message_id"].encode() + b";\r\n\t") in rest[:300],
              f"{user}: the Received: line (from {helo.decode()} ([127.0.0.1]) ... id {e['message_id']})", repr(rest[:300]))
        return
    fail(f"{user}: no message with token {tok!r}")


def part_d(hf, srv):
    log("\n== (d) bad input on raw sockets ==")
    port = srv.port

    log("  -- bare-LF client (lmtp.bare_lf = \"reject\", the default)")
    tok = token("barelf")
    body = b"Subject: bare LF " + tok + b"\nX-Token: " + tok + b"\n\nline one\n..stuffed\nlast\n"
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        c.send(b"LHLO lf.test\n")
        c.expect(500, "LHLO ended by a bare LF")
        c.send(b"LHLO lf.test\r\nMAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n")
        c.expect(250, "LHLO")
        c.expect(250, "MAIL")
        c.expect(250, "RCPT")
        c.expect(354, "DATA")
        c.send(body + b".\n")  # LF . LF is message text, not the end
        c.send(b"\r\n.\r\n")
        code, lines = c.reply()
        check(code == 550 and b"5.6.0" in lines[-1] and b"bare LF" in lines[-1],
              "a message with bare LFs is refused after CRLF.CRLF: 550 5.6.0", repr(lines))
        c.send(b"QUIT\r\n")
        c.expect(221, "QUIT")
    hflmtp.healthy(port)
    check(not with_token(read_mailbox(hf, "alice"), tok), "the refused bare-LF message is not stored")
    smuggling(hf, port, expect_refused=True)
    hflmtp.healthy(port)

    log("  -- NUL, bare CR, non-ASCII, a 10 KB command line, VRFY")
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        c.send(b"LHLO bad.test\r\n")
        c.expect(250, "LHLO")
        c.send(b"NO\x00OP\r\n")
        lines = c.expect(500, "command with a NUL byte")
        check(b"5.5.2" in lines[0] and b"NUL" in lines[0], "  ... 500 5.5.2 names the NUL byte", repr(lines))
        c.send(b"NO\rOP\r\n")
        c.expect(500, "command with a bare CR")
        c.send(b"NOOP \xff\xfe\r\n")
        c.expect(500, "command with non-ASCII bytes")
        c.send(b"NOOP " + b"a" * 10240 + b"\r\n")
        lines = c.expect(500, "10 KB command line")
        check(b"too long" in lines[0], "  ... 500 5.5.2 line too long", repr(lines))
        c.send(b"MAIL FROM:<" + b"x" * 10000 + b"@example.org>\r\n")
        c.expect(500, "10 KB MAIL FROM line")
        c.send(b"NOOP\r\n")
        c.expect(250, "NOOP right after: exactly one reply per long line, session goes on")
        c.send(b"VRFY alice\r\n")
        lines = c.expect(252, "VRFY")
        check(lines[0].startswith(b"252 2.5.2"), "  ... 252 2.5.2", repr(lines))
        c.send(b"QUIT\r\n")
        c.expect(221, "QUIT")
    hflmtp.healthy(port)

    log("  -- commands out of order")
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        for cmd, code, what in [
                (b"MAIL FROM:<a@example.org>", 503, "MAIL before LHLO"),
                (b"HELO x.test", 500, "HELO (this is LMTP)"),
                (b"EHLO x.test", 500, "EHLO (this is LMTP)"),
                (b"LHLO", 501, "LHLO without argument"),
                (b"LHLO x.test", 250, "LHLO"),
                (b"RCPT TO:<alice@localhost>", 503, "RCPT before MAIL"),
                (b"DATA", 503, "DATA before MAIL"),
                (b"MAIL FROM:<a@example.org>", 250, "MAIL"),
                (b"MAIL FROM:<a@example.org>", 503, "a second MAIL in the transaction"),
                (b"DATA", 503, "DATA without an accepted RCPT"),
                (b"RCPT TO:<nobody@localhost>", 550, "RCPT to an unknown user"),
                (b"DATA", 503, "DATA with only a refused RCPT"),
                (b"RSET", 250, "RSET"),
                (b"RCPT TO:<alice@localhost>", 503, "RCPT after RSET"),
                (b"STARTTLS", 502, "STARTTLS"),
                (b"EXPN list", 502, "EXPN"),
                (b"QUIT", 221, "QUIT")]:
            c.send(cmd + CRLF)
            c.expect(code, what)
    hflmtp.healthy(port)

    log("  -- pipelined garbage")
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        c.send(b"LHLO g.test\r\n" + b"".join(b"garbage %d \x01\x7f\r\n" % i if i % 2 else b"xyzzy%d\r\n" % i
                                              for i in range(10)) + b"NOOP\r\n")
        c.expect(250, "LHLO")
        codes = [c.reply()[0] for _ in range(10)]
        check(codes == [500] * 10, "10 pipelined garbage lines: ten 500 replies", repr(codes))
        c.expect(250, "NOOP after the garbage")
        c.send(b"".join(b"junk%d\r\n" % i for i in range(25)))
        codes = [c.reply()[0] for _ in range(21)]
        check(codes == [500] * 20 + [421], "25 more: 20 x 500, then 421 too many errors", repr(codes))
        check(c.eof(), "... and the server closes the connection")
    hflmtp.healthy(port)

    log("  -- too much input before LHLO")
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        c.send(b"NOOP\r\n" * 1000)
        codes = []
        while True:
            code, lines = c.reply()
            if code is None:
                break
            codes.append(code)
        check(codes and codes[-1] == 554 and set(codes[:-1]) <= {250},
              f"6000 bytes before LHLO: NOOPs answered, then 554 5.5.0 and close ({len(codes)} replies)",
              repr(codes[-5:]))
    hflmtp.healthy(port)

    log("  -- a client that disconnects in the middle of DATA")
    accepted_before = len(srv.events("accepted"))
    mid_tok = token("middata")
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        c.send(b"LHLO mid.test\r\nMAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<alice@localhost>\r\n"
               b"RCPT TO:<bob@localhost>\r\nDATA\r\n")
        for code in (250, 250, 250, 250, 354):
            c.expect(code, "transaction before the cut")
        c.send(b"Subject: " + mid_tok + b"\r\n\r\n" + b"half a message\r\n" * 2000 + b"no end")
    # The session may take a moment to see the EOF.
    time.sleep(0.3)
    after_tok = token("after-cut")
    after = simple_body(after_tok)
    c = hflmtp.connect(port)
    rr, final = hflmtp.lmtp_send(c, SENDER, ["alice@localhost", "bob@localhost"], after)
    c.quit()
    check([final.get(r, (0,))[0] for r in ("alice@localhost", "bob@localhost")] == [250, 250],
          "a complete message afterwards: 250, 250")
    for user in ("alice", "bob"):
        expect_one(hf, user, after_tok, expected_stored(after, SENDER, f"{user}@localhost"), f"message after the cut -> {user}")
    time.sleep(0.3)
    for user in ("alice", "bob"):
        msgs = read_mailbox(hf, user)
        check(not with_token(msgs, mid_tok), f"nothing of the cut message in {user}'s mailbox")
    acc = srv.events("accepted")[accepted_before:]
    check(len(acc) == 1, "exactly one event=accepted since (the complete message)", "\n".join(acc))
    hflmtp.healthy(port)

    log("  -- a client that disconnects right after the final dot (not acknowledged: 0 or 1 copy)")
    dot_tok = token("cut-after-dot")
    body = simple_body(dot_tok)
    with hflmtp.RawLmtp(port) as c:
        c.expect(220, "greeting")
        c.send(b"LHLO dot.test\r\nMAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
        for code in (250, 250, 250, 354):
            c.expect(code, "transaction")
        c.send(body + b".\r\n")
        c.sock.shutdown(socket.SHUT_RDWR)
    mark_tok = token("marker")
    mark = simple_body(mark_tok)
    c = hflmtp.connect(port)
    hflmtp.lmtp_send(c, SENDER, ["bob@localhost"], mark)
    c.quit()
    msgs = wait_for(hf, "bob", lambda m: with_token(m, mark_tok))
    time.sleep(0.3)
    msgs = read_mailbox(hf, "bob")
    copies = with_token(msgs, dot_tok)
    check(len(copies) <= 1 and all(x == expected_stored(body, SENDER, "bob@localhost") for _, x in copies),
          f"message cut after its final dot: {len(copies)} copy (at most one, whole)")
    hflmtp.healthy(port)
    check(srv.alive(), "the server is still running after all the bad input")


def part_e(hf, srv, tmp, binary):
    log("\n== (e) SIGTERM ==")
    port = srv.port
    idle = hflmtp.connect(port)  # an idle session
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    refused = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.close()
        except ConnectionRefusedError:
            refused = True
            break
        time.sleep(0.05)
    check(refused, f"after SIGTERM new connections are refused ({time.monotonic() - t0:.2f}s)")
    time.sleep(0.5)
    check(srv.alive(), "an idle open session keeps the draining server up")
    check(len(srv.events("draining")) == 1, "log: event=draining")
    tok = token("during-drain")
    body = simple_body(tok)
    rr, final = hflmtp.lmtp_send(idle, SENDER, ["alice@localhost"], body)
    code = final.get("alice@localhost", (None,))[0]
    check(code == 250 or (code is not None and 400 <= code < 500),
          f"the session can still finish a message while draining: {code}")
    t1 = time.monotonic()
    idle.quit()
    rc = srv.wait(10)
    took = time.monotonic() - t1
    check(rc == 0, f"QUIT of the last session -> exit 0 within {took:.2f}s", f"rc={rc}\n{srv.log_tail()}")
    check(took < 5, "... promptly (< 5 s, far below the 30 s drain deadline)")
    stopped = srv.events("stopped")
    check(len(stopped) == 1 and hflmtp.kv(stopped[0], "unretired") == "0",
          "log: event=stopped ... unretired=0 (everything acknowledged was filed)", "\n".join(stopped))
    if code == 250:
        msgs = read_mailbox(hf, "alice")
        check(len(with_token(msgs, tok)) == 1, "the message acknowledged during the drain is in alice's mailbox")
    r = hf.fsck()
    check(r.returncode == 0, "holdfast fsck: exit 0")

    # A server with no session left: SIGTERM exits at once.
    with hflmtp.Server(binary, hf.data, srv.log_path, port=port) as s2:
        s2.start()
        c = hflmtp.connect(port)
        c.quit()
        time.sleep(0.1)
        rc, took = s2.stop()
        check(rc == 0 and took < 5, f"connection closed by QUIT, then SIGTERM: exit {rc} in {took:.2f}s")

    # A second SIGTERM stops at once even with an idle session.
    with hflmtp.Server(binary, hf.data, srv.log_path, port=port) as s3:
        s3.start()
        idle = hflmtp.connect(port)
        s3.signal(signal.SIGTERM)
        time.sleep(0.3)
        t1 = time.monotonic()
        s3.signal(signal.SIGTERM)
        rc = s3.wait(10)
        took = time.monotonic() - t1
        check(rc == 0 and took < 5,
              f"idle session + two SIGTERMs: the second stops at once (exit {rc} in {took:.2f}s)",
              "expected exit 0 within 5 s of the second SIGTERM (server.cc: 'a second signal stops at "
              "once'); the server log of this run:\n" + s3.log_text(since_start=True))
        try:
            idle.close()
        except Exception:  # noqa: BLE001
            pass


def main(args):
    missing = [p for p in (SWAKS, SMTP_SOURCE) if not os.path.exists(p)]
    if missing:
        hfsys.skip(f"missing {', '.join(missing)} (install swaks and postfix: scripts/bootstrap.sh)")
    t_start = time.monotonic()
    with hfsys.TempDir(prefix="hflmtp-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        for u in ("alice", "bob", "carol"):
            hf.user_add(u, f"pw-{u}")
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"), unix_path=tmp.sub("lmtp.sock"))
        try:
            greeting = srv.start()
            check(greeting.startswith(b"220 ") and b"LMTP" in greeting,
                  f"server ready on 127.0.0.1:{srv.port} and {srv.unix_path}: {greeting.strip().decode()}")
            part_a(hf, srv, tmp.path)
            part_b(hf, srv, tmp.path, binary)
            part_c(hf, srv)
            part_d(hf, srv)
            check(srv.alive(), "server still running before the SIGTERM tests")
            part_e(hf, srv, tmp.path, binary)
            errors = [ln for ln in srv.log_lines() if " error " in ln or "event=startup_failed" in ln]
            errors += srv.sanitizer_reports()
            check(not errors, "no error lines in the server log", "\n".join(errors[:20]))
        except BaseException:
            log(f"\n--- server log (last 60 lines) ---\n{srv.log_tail(60)}")
            raise
        finally:
            srv.kill9()
    log(f"\ntotal {time.monotonic() - t_start:.1f}s")


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
