#!/usr/bin/env python3
"""Takes one message from a RabbitMQ queue with pika, prints it, and puts it
back (basic.nack with requeue), as someone with access to the broker would
read it.

    python3 peek_amqp.py QUEUE [--url AMQP_URL]

Prints one JSON object on stdout: {"body": hex, "headers": {name: text},
"content_type": ...}. An empty or missing queue is one line on stderr
starting with "error:" and exit status 1.

Needs: pip install pika
"""

from __future__ import annotations

import argparse
import json
import sys

import pika
import pika.exceptions

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"


def text(value: object) -> str:
    """A header value as text (bytes as latin-1, so every byte shows)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    try:
        channel = connection.channel()
        try:
            method, properties, body = channel.basic_get(args.queue, auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as error:
            print(f"error: cannot read queue {args.queue}: {error}", file=sys.stderr)
            return 1
        if method is None:
            print(f"error: queue {args.queue} is empty", file=sys.stderr)
            return 1
        channel.basic_nack(method.delivery_tag, requeue=True)
        headers = {name: text(value) for name, value in (properties.headers or {}).items()}
        print(json.dumps({"body": body.hex(), "headers": headers, "content_type": properties.content_type}))
        return 0
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
