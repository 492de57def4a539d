"""Real Forward protocol clients for tests/fluent.rs.

  logger HOST PORT TAG N   fluent-logger's FluentSender (Message mode, EventTime),
                           N records {"n": i, "msg": "héllo"} labelled "web",
                           at 1700000000 + i seconds and 123456789 ns.
  chunks HOST PORT TAG N   Forward mode through the msgpack package, one chunk of N
                           records asking for an ack; resent on a new connection when
                           the server closes without acking. Prints a JSON summary.
"""
import json
import socket
import sys
import time

import msgpack


def event_time(seconds, nanos):
    return msgpack.ExtType(0, seconds.to_bytes(4, "big") + nanos.to_bytes(4, "big"))


def logger(host, port, tag, n):
    from fluent import sender

    s = sender.FluentSender(tag, host=host, port=port, nanosecond_precision=True)
    for i in range(n):
        ok = s.emit_with_time("web", sender.EventTime(1700000000 + i + 0.123456789), {"n": i, "msg": "héllo"})
        if not ok:
            raise SystemExit("emit failed: %r" % s.last_error)
    s.close()
    print(json.dumps({"sent": n}))


def chunks(host, port, tag, n):
    entries = [[event_time(1700000000 + i, 5), {"n": i}] for i in range(n)]
    message = msgpack.packb([tag, entries, {"chunk": "Y2h1bmstMQ==", "size": n}], use_bin_type=True)
    started = time.monotonic()
    closed = 0
    for _ in range(20):
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(message)
                unpacker = msgpack.Unpacker(raw=False)
                while True:
                    data = sock.recv(4096)
                    if not data:
                        raise ConnectionError("closed without an ack")
                    unpacker.feed(data)
                    for reply in unpacker:
                        if reply.get("ack") != "Y2h1bmstMQ==":
                            raise SystemExit("unexpected reply %r" % (reply,))
                        elapsed = int((time.monotonic() - started) * 1000)
                        print(json.dumps({"acked": True, "closed": closed, "elapsed_ms": elapsed}))
                        return
        except (ConnectionError, socket.timeout, OSError):
            closed += 1
            time.sleep(0.05)
    print(json.dumps({"acked": False, "closed": closed}))


if __name__ == "__main__":
    mode, host, port, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    {"logger": logger, "chunks": chunks}[mode](host, port, tag, n)
