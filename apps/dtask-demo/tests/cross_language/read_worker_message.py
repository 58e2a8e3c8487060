#!/usr/bin/env python3
"""Reads one dtask worker message from RabbitMQ, as a worker written in
Python would, with nothing from dtask but its shipped .proto files.

    python3 read_worker_message.py QUEUE [--url AMQP_URL] [--proto-dir DIR]

It compiles crates/dtask-proto/proto/dtask/v1/*.proto at run time with
grpc_tools.protoc into a temporary directory, takes ONE message from QUEUE
(basic.get), checks its headers, decodes the body as a dtask.v1.SagaState
and the request and step data it nests (JSON), acknowledges the message, and
prints one JSON object on stdout with what it read. Any problem is one line
on stderr starting with "error:" and a non-zero exit; a message it took but
could not read is rejected without requeue (the broker dead-letters it to
QUEUE.dead-letter, as dtask's own workers do).

Needs: pip install protobuf grpcio-tools pika
(docs/cross-language.md explains the message layout.)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

# The saga state schema this reader understands (dtask.v1.SagaState.schema_version).
SUPPORTED_SCHEMA_VERSION = 1
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
DEFAULT_PROTO_DIR = Path(__file__).resolve().parents[4] / "crates" / "dtask-proto" / "proto"
PROTO_FILES = ("dtask/v1/progress.proto", "dtask/v1/saga.proto")
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"

# Exit codes.
EXIT_FAILED = 1
EXIT_MISSING_PACKAGE = 3


class ReadError(Exception):
    """A problem that ends the run with a one-line message."""


def require_packages() -> None:
    """Fails with the pip command when a needed package is missing."""
    missing = []
    for module, package in (("google.protobuf", "protobuf"), ("grpc_tools.protoc", "grpcio-tools"), ("pika", "pika")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        print(
            f"error: missing Python package(s): {', '.join(missing)}; run: pip install protobuf grpcio-tools pika",
            file=sys.stderr,
        )
        sys.exit(EXIT_MISSING_PACKAGE)


def compile_protos(proto_dir: Path, out_dir: Path) -> tuple[Any, Any]:
    """Compiles the dtask .proto files into out_dir; returns (saga_pb2, progress_pb2)."""
    from grpc_tools import protoc

    for name in PROTO_FILES:
        if not (proto_dir / name).is_file():
            raise ReadError(f"{proto_dir / name} not found (pass --proto-dir)")
    # google/protobuf/timestamp.proto ships inside grpcio-tools.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out_dir}", *PROTO_FILES]
    )
    if status != 0:
        raise ReadError(f"protoc failed (exit {status}) on {', '.join(PROTO_FILES)} in {proto_dir}")
    sys.path.insert(0, str(out_dir))
    saga_pb2 = importlib.import_module("dtask.v1.saga_pb2")
    progress_pb2 = importlib.import_module("dtask.v1.progress_pb2")
    return saga_pb2, progress_pb2


def header_value(value: Any) -> Any:
    """A header value for the JSON output: text when it is a string, else as pika gave it."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    return value


def header_text(headers: dict[str, Any], name: str) -> str | None:
    """A header as text (pika gives long strings as str, or bytes when not UTF-8)."""
    value = headers.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ReadError(f"header {name} is not UTF-8") from error
    return str(value)


def check_headers(headers: dict[str, Any], content_type: str | None) -> int:
    """Checks the format and schema version headers; returns the schema version."""
    message_format = header_text(headers, "dtask-format")
    if message_format != "protobuf":
        raise ReadError(
            f"header dtask-format is {message_format!r}, not 'protobuf' (publish with the protobuf serializer)"
        )
    if content_type != PROTOBUF_CONTENT_TYPE:
        raise ReadError(f"content_type is {content_type!r}, not {PROTOBUF_CONTENT_TYPE!r}")
    version_text = header_text(headers, "dtask-schema-version")
    if version_text is None:
        return 1  # an absent version is version 1
    try:
        version = int(version_text)
    except ValueError as error:
        raise ReadError(f"header dtask-schema-version is {version_text!r}, not a number") from error
    if version > SUPPORTED_SCHEMA_VERSION:
        raise ReadError(f"schema version {version} is newer than this reader reads ({SUPPORTED_SCHEMA_VERSION})")
    return version


def unnest(saga_pb2: Any, state: Any, field: str) -> tuple[str, Any]:
    """Decodes the dtask.v1.Nested field of state; returns (encoding name, value)."""
    if not state.HasField(field):
        return ("ABSENT", None)
    nested = getattr(state, field)
    encoding = saga_pb2.Encoding.Name(nested.encoding) if nested.encoding in saga_pb2.Encoding.values() else None
    if encoding == "ENCODING_JSON":
        try:
            return (encoding, json.loads(nested.value.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ReadError(f"{field}: not valid UTF-8 JSON: {error}") from error
    if encoding == "ENCODING_MSGPACK":
        try:
            import msgpack  # type: ignore[import-not-found]
        except ImportError as error:
            raise ReadError(f"{field} is MessagePack-encoded: pip install msgpack") from error
        return (encoding, msgpack.unpackb(nested.value, raw=False))
    raise ReadError(f"{field} has unknown nested encoding {nested.encoding}")


def decode_state(saga_pb2: Any, progress_pb2: Any, body: bytes) -> dict[str, Any]:
    """What the body, one dtask.v1.SagaState, says."""
    from google.protobuf.message import DecodeError

    state = saga_pb2.SagaState()
    try:
        state.ParseFromString(body)
    except DecodeError as error:
        raise ReadError(f"the body is not a dtask.v1.SagaState: {error}") from error
    if state.schema_version > SUPPORTED_SCHEMA_VERSION:
        raise ReadError(
            f"the body's schema version {state.schema_version} is newer than this reader reads"
            f" ({SUPPORTED_SCHEMA_VERSION})"
        )
    if not state.HasField("progress"):
        raise ReadError("the saga state has no progress record")
    if not state.HasField("deadline"):
        raise ReadError("the saga state has no deadline")
    progress = state.progress
    request_encoding, request = unnest(saga_pb2, state, "request")
    data_encoding, data = unnest(saga_pb2, state, "data")
    response_encoding, response = unnest(saga_pb2, state, "response")
    return {
        "schema_version": state.schema_version,
        "task_id": progress.task_id,
        "task_name": progress.task_name,
        "status": progress_pb2.TaskStatus.Name(progress.status),
        "total_steps": progress.total_steps,
        "completed_steps": progress.completed_steps,
        "steps": [
            {
                "name": step.name,
                "order": step.order,
                "host": progress_pb2.StepHost.Name(step.host),
                "status": progress_pb2.StepStatus.Name(step.status),
                "attempts": step.attempts,
            }
            for step in progress.steps
        ],
        "encodings": {"request": request_encoding, "data": data_encoding, "response": response_encoding},
        "request": request,
        "data": data,
        "response": response,
        "deadline": state.deadline.ToJsonString(),
    }


def take_one(url: str, queue: str, read: Any) -> dict[str, Any]:
    """Takes one message from queue, reads it with read(properties, body), acks it."""
    import pika
    from pika import exceptions

    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except exceptions.AMQPError as error:
        raise ReadError(f"cannot connect to RabbitMQ at {url.split('@')[-1]}: {error!r}") from error
    try:
        channel = connection.channel()
        try:
            method, properties, body = channel.basic_get(queue=queue, auto_ack=False)
        except exceptions.ChannelClosedByBroker as error:
            raise ReadError(f"cannot read queue {queue!r}: {error.reply_text}") from error
        if method is None:
            raise ReadError(f"queue {queue!r} is empty")
        try:
            result = read(properties, body)
        except ReadError:
            channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            raise
        channel.basic_ack(delivery_tag=method.delivery_tag)
        result["redelivered"] = bool(method.redelivered)
        return result
    finally:
        if connection.is_open:
            connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="Read one dtask worker message (protobuf) from RabbitMQ.")
    parser.add_argument("queue", help="the queue's name on the broker (with its namespace, if any)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the AMQP URL (default {DEFAULT_URL})")
    parser.add_argument("--proto-dir", type=Path, default=DEFAULT_PROTO_DIR, help="the root of the dtask .proto files")
    args = parser.parse_args()
    require_packages()

    with tempfile.TemporaryDirectory(prefix="dtask-proto-") as out_dir:
        try:
            saga_pb2, progress_pb2 = compile_protos(args.proto_dir, Path(out_dir))

            def read(properties: Any, body: bytes) -> dict[str, Any]:
                raw_headers = properties.headers or {}
                headers = {name: header_value(value) for name, value in raw_headers.items()}
                header_version = check_headers(raw_headers, properties.content_type)
                state = decode_state(saga_pb2, progress_pb2, body)
                if headers.get("dtask-task-id") != state["task_id"]:
                    raise ReadError(f"header dtask-task-id {headers.get('dtask-task-id')!r} is not the body's task id")
                if headers.get("dtask-task-name") != state["task_name"]:
                    raise ReadError("header dtask-task-name is not the body's task name")
                return {
                    "queue": args.queue,
                    "properties": {
                        "content_type": properties.content_type,
                        "message_id": properties.message_id,
                        "delivery_mode": properties.delivery_mode,
                    },
                    "headers": headers,
                    "header_schema_version": header_version,
                    **state,
                }

            result = take_one(args.url, args.queue, read)
        except ReadError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
    json.dump(result, sys.stdout, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
