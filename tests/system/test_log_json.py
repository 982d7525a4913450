#!/usr/bin/env python3
"""log.format = "json": every line `holdfast serve` writes is one
JSON object with time, level and event; a line about a message carries its
MessageId as "id"; SIGHUP after switching the file back to "text" gives text
lines again (the format is reloaded like the level).

Set-up: user alice; DATA/holdfast.toml with [log] format = "json".
1. Start, one message over LMTP (smtplib.LMTP), wait for it in the mailbox.
2. Every stderr line parses with json.loads; each has "time" (ISO 8601, Z),
   "level" in debug/info/warn/error, "event"; the "accepted" line and the
   spool's "delivered" line name the same "id", and it is the MessageId the
   250 reply gave.
3. Rewrite the config with format = "text", SIGHUP, send a second message:
   lines after the reload are text again ("TIMESTAMP LEVEL event=...").

Run:  /usr/bin/python3 tests/system/test_log_json.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402
from hflmtp import CRLF  # noqa: E402


def send(srv, n):
    conn = hflmtp.connect(srv.port)
    _, final = hflmtp.lmtp_send(conn, "s@example.org", ["alice@localhost"],
                                b"Subject: json log " + str(n).encode() + CRLF + CRLF + b"hello" + CRLF)
    conn.quit()
    code, text = final.get("alice@localhost", (None, b""))
    check(code == 250, f"message {n}: 250")
    m = re.search(rb"> (\S{26}) accepted", text)
    check(m is not None, f"the 250 names the MessageId ({text!r})")
    return m.group(1).decode()


def main(args):
    with hfsys.TempDir(prefix="hfjson-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw")
        hflmtp.write_config(data, '[log]\nformat = "json"\n')
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            mid = send(srv, 1)
            hflmtp.wait_count(hf, "alice", 1)
            time.sleep(0.2)
            lines = srv.log_lines()
            check(len(lines) >= 5, f"the server logged ({len(lines)} lines)")
            ids = {}
            for ln in lines:
                try:
                    obj = json.loads(ln)
                except ValueError:
                    hfsys.fail(f"not a JSON line: {ln!r}")
                if not (isinstance(obj, dict) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", obj.get("time", ""))
                        and obj.get("level") in ("debug", "info", "warn", "error") and obj.get("event")):
                    hfsys.fail(f"a JSON line without time/level/event: {ln!r}")
                if obj["event"] == "accepted" or (obj["event"] == "spool" and obj.get("msg", "").startswith("delivered")):
                    ids[obj["event"]] = obj.get("id")
            check(True, f"all {len(lines)} lines are JSON objects with time, level and event")
            check(ids.get("accepted") == mid and ids.get("spool") == mid,
                  f"the accepted and delivered lines carry the MessageId of the 250 ({ids} vs {mid})")

            hflmtp.write_config(data, '[log]\nformat = "text"\n')
            before = len(srv.log_lines())
            srv.signal(signal.SIGHUP)
            time.sleep(0.5)
            send(srv, 2)
            hflmtp.wait_count(hf, "alice", 2)
            time.sleep(0.2)
            after = srv.log_lines()[before:]
            text = [ln for ln in after if re.match(r"^\d{4}-\d\d-\d\dT\S+Z (info|warn|debug|error) event=", ln)]
            check(any("event=accepted" in ln for ln in text), "after SIGHUP with format = text: text lines again",
                  "\n".join(after[-10:]))
            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
        except BaseException:
            log(f"\n--- server log (last 30 lines) ---\n{srv.log_tail(30)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
