#!/usr/bin/env python3
"""Follows a tenant's events from access-service, as a mobile backend would.

It streams `EventService.WatchEvents`, prints each event as a JSON line, and saves the
cursor of every message (events and heartbeats) to a file, so that when it is stopped,
or the replica it talks to goes away, it resumes after the last event it handled, in
order. A kill between printing an event and saving its cursor prints that event again
on restart: receivers de-duplicate on the event's `id`.

    pip install grpcio grpcio-tools grpcio-status
    python3 follow_events.py --addr 127.0.0.1:50051 --token "$TOKEN" \
        --cursor-file cursor.txt [--door DOOR_ID ...] [--include-decisions]

The stubs are compiled from the repository's `proto/` at start (grpcio-tools), so the
client always matches the service it ships with.
"""

import argparse
import atexit
import importlib
import json
import os
import random
import shutil
import sys
import tempfile
import time

import grpc
from google.protobuf import json_format
from grpc_status import rpc_status
from grpc_tools import protoc

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs():
    """Compiles events.proto (and what it imports) into a temporary package, removed at
    exit."""
    out = tempfile.mkdtemp(prefix="latchkey-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    # events.proto imports access.proto, which imports directory.proto.
    protos = [
        "latchkey/access/v1/directory.proto",
        "latchkey/access/v1/access.proto",
        "latchkey/access/v1/events.proto",
    ]
    code = protoc.main(
        ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + [os.path.join(PROTO_ROOT, p) for p in protos]
    )
    if code != 0:
        sys.exit(f"compiling the protos failed ({code})")
    for package in ["latchkey", "latchkey/access", "latchkey/access/v1"]:
        open(os.path.join(out, package, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    messages = importlib.import_module("latchkey.access.v1.events_pb2")
    services = importlib.import_module("latchkey.access.v1.events_pb2_grpc")
    return messages, services


def read_cursor(path):
    try:
        with open(path, encoding="utf-8") as saved:
            return saved.read().strip() or None
    except FileNotFoundError:
        return None


def save_cursor(path, cursor):
    # Written aside and renamed: a crash leaves the old cursor or the new one, whole.
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".cursor-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(cursor)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def oldest_cursor(error):
    """The oldest cursor still kept, from an OUT_OF_RANGE error's ErrorInfo."""
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and "oldest_cursor" in info.metadata:
            return info.metadata["oldest_cursor"]
    return None


def follow(args, messages, services):
    metadata = [("authorization", f"Bearer {args.token}")]
    event_filter = messages.EventFilter(
        door_ids=args.door, property_ids=args.property, include_decisions=args.include_decisions
    )
    backoff = 0.5
    while True:
        cursor = read_cursor(args.cursor_file)
        start = messages.EventStart(after_cursor=cursor) if cursor else messages.EventStart(now=True)
        channel = grpc.insecure_channel(
            args.addr,
            options=[("grpc.keepalive_time_ms", 30000), ("grpc.keepalive_timeout_ms", 10000)],
        )
        stub = services.EventServiceStub(channel)
        try:
            request = messages.WatchEventsRequest(filter=event_filter, start=start)
            for message in stub.WatchEvents(request, metadata=metadata):
                backoff = 0.5
                if message.HasField("event"):
                    event = json_format.MessageToDict(message.event, preserving_proto_field_name=True)
                    print(json.dumps(event), flush=True)
                    save_cursor(args.cursor_file, message.event.cursor)
                else:
                    save_cursor(args.cursor_file, message.heartbeat.cursor)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.OUT_OF_RANGE:
                oldest = oldest_cursor(error)
                print(f"events after the saved cursor were deleted; resuming at {oldest}", file=sys.stderr)
                if oldest is None:
                    sys.exit(error.details())
                save_cursor(args.cursor_file, oldest)
                continue
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.PERMISSION_DENIED):
                sys.exit(f"{code.name}: {error.details()}")
            # UNAVAILABLE (a replica going away), RESOURCE_EXHAUSTED (too slow), a stream
            # ended by shutdown: resume from the saved cursor, on whatever replica answers.
            print(f"{code.name}: {error.details()}; resuming", file=sys.stderr)
        finally:
            channel.close()
        time.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--token", default=os.environ.get("LATCHKEY_TOKEN"), required="LATCHKEY_TOKEN" not in os.environ)
    parser.add_argument("--cursor-file", default="latchkey-cursor.txt")
    parser.add_argument("--door", action="append", default=[])
    parser.add_argument("--property", action="append", default=[])
    parser.add_argument("--include-decisions", action="store_true")
    args = parser.parse_args()
    messages, services = load_stubs()
    try:
        follow(args, messages, services)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
