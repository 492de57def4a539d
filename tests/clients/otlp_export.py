"""A real OpenTelemetry SDK exporting to sluice: logs through Python's logging bridge,
one span with an event, and one counter, over OTLP/HTTP (protobuf) or OTLP/gRPC.

usage: otlp_export.py http|grpc ENDPOINT [TOKEN]

Exits 0 when every export succeeded, 1 (naming the signal) when one failed.
"""

import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

protocol, endpoint = sys.argv[1], sys.argv[2]
headers = {"authorization": f"Bearer {sys.argv[3]}"} if len(sys.argv) > 3 else None

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    kw = dict(endpoint=endpoint, insecure=True, headers=headers, timeout=10)
    logs, spans, metrics = OTLPLogExporter(**kw), OTLPSpanExporter(**kw), OTLPMetricExporter(**kw)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    kw = dict(headers=headers, timeout=10)
    logs = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", **kw)
    spans = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", **kw)
    metrics = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", **kw)

failed = []


def checked(exporter, name):
    """Wraps an exporter's export to remember a failure."""
    inner = exporter.export

    def export(*args, **kwargs):
        result = inner(*args, **kwargs)
        if getattr(result, "name", "") != "SUCCESS":
            failed.append(name)
        return result

    exporter.export = export
    return exporter


resource = Resource.create({"service.name": "checkout", "deployment.environment": "test"})

log_provider = LoggerProvider(resource=resource)
log_provider.add_log_record_processor(SimpleLogRecordProcessor(checked(logs, "logs")))
logger = logging.getLogger("checkout.payments")
logger.propagate = False
logger.setLevel(logging.INFO)
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=log_provider))
logger.warning("card declined", extra={"order.id": 4711, "retry": True, "amount": 12.5})
logger.error("gateway timeout", extra={"order.id": 4712, "tags": ["a", "b"]})
log_provider.shutdown()

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(checked(spans, "traces")))
with tracer_provider.get_tracer("checkout.http", "1.0").start_as_current_span("POST /pay") as span:
    span.set_attribute("http.status_code", 502)
    span.add_event("retrying", {"attempt": 2})
tracer_provider.shutdown()

reader = PeriodicExportingMetricReader(checked(metrics, "metrics"), export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
counter = meter_provider.get_meter("checkout.metrics").create_counter("payments", unit="1")
counter.add(3, {"outcome": "declined"})
meter_provider.shutdown()

if failed:
    print("failed:", ",".join(failed), file=sys.stderr)
    sys.exit(1)
