"""An OTLP logs receiver built on opentelemetry-proto (Python's generated messages and
gRPC service), for the `otlp` sink's tests: OTLP/gRPC on one port and OTLP/HTTP
(`POST /v1/logs`, protobuf, gzip) on another.

usage: otlp_receiver.py [--unavailable N] [--refuse] [--partial K]

Prints `READY <grpc port> <http port>`, then one JSON line per request:
{"transport", "authorization", "encoding", "resource_logs": [MessageToDict of each]}.
--unavailable N answers the first N requests UNAVAILABLE / 503 (retryable);
--refuse answers INVALID_ARGUMENT / 400; --partial K reports K rejected records.
"""

import argparse
import gzip
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

args = argparse.ArgumentParser()
args.add_argument("--unavailable", type=int, default=0)
args.add_argument("--refuse", action="store_true")
args.add_argument("--partial", type=int, default=0)
opts = args.parse_args()

lock = threading.Lock()
state = {"unavailable": opts.unavailable}


def verdict():
    """None (take it), or the failure to answer."""
    with lock:
        if state["unavailable"] > 0:
            state["unavailable"] -= 1
            return "unavailable"
    return "refuse" if opts.refuse else None


def record(transport, authorization, encoding, request):
    line = {
        "transport": transport,
        "authorization": authorization,
        "encoding": encoding,
        "resource_logs": [MessageToDict(r) for r in request.resource_logs],
    }
    with lock:
        print(json.dumps(line), flush=True)


def response():
    r = logs_service_pb2.ExportLogsServiceResponse()
    if opts.partial:
        r.partial_success.rejected_log_records = opts.partial
        r.partial_success.error_message = "records too old"
    return r


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        meta = dict(context.invocation_metadata())
        v = verdict()
        if v == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector is restarting")
        if v == "refuse":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "schema rejected")
        record("grpc", meta.get("authorization"), meta.get("grpc-encoding"), request)
        return response()


class Http(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/logs" or self.headers.get("content-type") != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        encoding = self.headers.get("content-encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        v = verdict()
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        if v:
            code, msg = (503, "collector is restarting") if v == "unavailable" else (400, "schema rejected")
            self.send_response(code)
            self.send_header("content-type", "application/x-protobuf")
            if code == 503:
                self.send_header("retry-after", "3")
            self.end_headers()
            self.wfile.write(status(code, msg))
            return
        record("http", self.headers.get("authorization"), encoding, request)
        out = response().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def status(code, message):
    """A google.rpc.Status (code 14 or 3 and the message), encoded by hand."""
    grpc_code = 14 if code == 503 else 3
    msg = message.encode()
    return bytes([0x08, grpc_code, 0x12, len(msg)]) + msg


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
grpc_port = server.add_insecure_port("127.0.0.1:0")
server.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
threading.Thread(target=http.serve_forever, daemon=True).start()
print(f"READY {grpc_port} {http.server_address[1]}", flush=True)
try:
    sys.stdin.read()
finally:
    server.stop(0)
