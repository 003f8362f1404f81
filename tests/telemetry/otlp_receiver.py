"""A minimal OTLP/HTTP trace receiver: decodes ``ExportTraceServiceRequest`` bodies it is sent."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2


class Receiver:
    """Listens on 127.0.0.1 (a free port) in a thread; keeps every ``ResourceSpans`` received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[trace_pb2.ResourceSpans] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # path, headers (lowercase)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                if "json" in self.headers.get("Content-Type", ""):
                    json_format.Parse(body, request)
                else:
                    request.ParseFromString(body)
                receiver.keep(self.path, {k.lower(): v for k, v in self.headers.items()}, request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver")
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def keep(self, path: str, headers: dict[str, str], request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.requests.append((path, headers))
            self._received.extend(request.resource_spans)

    def resource_spans(self) -> list[trace_pb2.ResourceSpans]:
        with self._lock:
            return list(self._received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
