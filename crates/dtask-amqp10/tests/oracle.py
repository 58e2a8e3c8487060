#!/usr/bin/env python3
"""An independent AMQP 1.0 client (Qpid Proton) checking dtask-amqp10's wire
layout against RabbitMQ.

    oracle.py read URL ADDRESS EXPECTED_JSON
        receives one message from ADDRESS, checks that its body is the bytes
        EXPECTED["body_hex"] in one data section, that its application
        properties include EXPECTED["properties"] and that its message-id,
        content-type and durability are EXPECTED's; accepts it.
    oracle.py send URL ADDRESS MESSAGE_JSON
        sends a durable message with MESSAGE["body_hex"] as its data section,
        MESSAGE["properties"] as application properties, MESSAGE["id"] as
        message-id and MESSAGE["content_type"]; waits for `accepted`.

Prints one line and exits 0 when all holds; prints why and exits 1 otherwise.
"""

import json
import sys

from proton import Message, Terminus
from proton.reactor import LinkOption
from proton.utils import BlockingConnection

TIMEOUT = 10


class Durable(LinkOption):
    """A durable terminus: RabbitMQ's AMQP 1.0 plugin declares (or finds) the
    queue as durable, as dtask-amqp10 does."""

    def apply(self, link):
        link.source.durability = Terminus.CONFIGURATION
        link.target.durability = Terminus.CONFIGURATION


def fail(why):
    print("oracle: " + why)
    sys.exit(1)


def connect(url):
    return BlockingConnection(url, timeout=TIMEOUT, allowed_mechs="PLAIN ANONYMOUS")


def read(url, address, expected):
    connection = connect(url)
    receiver = connection.create_receiver(address, credit=1, options=Durable())
    message = receiver.receive(timeout=TIMEOUT)
    body = message.body
    if isinstance(body, memoryview):
        body = body.tobytes()
    if not isinstance(body, (bytes, bytearray)):
        fail("the body is not one data section of bytes: %r" % (type(body),))
    if bytes(body).hex() != expected["body_hex"]:
        fail("the body differs: %s" % bytes(body).hex())
    properties = message.properties or {}
    for name, value in expected["properties"].items():
        if properties.get(name) != value:
            fail("application property %s is %r, expected %r" % (name, properties.get(name), value))
    if str(message.id) != expected["id"]:
        fail("message-id is %r, expected %r" % (message.id, expected["id"]))
    if str(message.content_type) != expected["content_type"]:
        fail("content-type is %r" % (message.content_type,))
    if not message.durable:
        fail("the message is not durable")
    receiver.accept()
    connection.close()
    print("oracle: read and checked %s" % message.id)


def send(url, address, spec):
    connection = connect(url)
    sender = connection.create_sender(address, options=Durable())
    message = Message(
        body=bytes.fromhex(spec["body_hex"]),
        inferred=True,  # bytes as a data section, not an amqp-value
        id=spec["id"],
        content_type=spec["content_type"],
        durable=True,
        properties=spec["properties"],
    )
    sender.send(message, timeout=TIMEOUT)  # returns once settled as accepted
    connection.close()
    print("oracle: sent %s" % spec["id"])


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("read", "send"):
        fail("usage: oracle.py read|send URL ADDRESS JSON")
    verb, url, address, spec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        (read if verb == "read" else send)(url, address, spec)
    except Exception as error:  # noqa: BLE001 - any failure is the oracle's answer
        fail("%s: %s" % (type(error).__name__, error))


if __name__ == "__main__":
    main()
