"""Holds gRPC calls open over raw HTTP/2: each stream sends its headers and the start of
a message that promises 100 bytes, then nothing more (a stalled or hostile client).

usage: h2_stall.py PORT TOKEN STREAMS SECONDS

Prints `stalled` once the frames are sent, then holds the connection for SECONDS.
"""

import socket
import struct
import sys
import time


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """An HPACK literal header field without indexing, short enough for 1-byte lengths."""
    name, value = name.encode(), value.encode()
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


port, token, streams, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
block = b"".join(
    literal(k, v)
    for k, v in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", f"Bearer {token}"),
    ]
)
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
for i in range(streams):
    stream = 1 + 2 * i
    sock.sendall(frame(1, 4, stream, block))  # HEADERS, END_HEADERS
    sock.sendall(frame(0, 0, stream, b"\x00\x00\x00\x00\x64\x0a"))  # 1 of 100 bytes
print("stalled", flush=True)
time.sleep(seconds)
