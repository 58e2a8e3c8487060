"""Verifies a webhook delivery with the official Standard Webhooks library.

Reads {"secret", "headers", "body"} as JSON on stdin; prints the verified
payload as JSON, or exits non-zero with the library's error. Also checks
that the library refuses the delivery under another secret and with its
body changed, so a pass means the signature is bound to both.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

delivery = json.load(sys.stdin)
webhook = Webhook(delivery["secret"])
payload = webhook.verify(delivery["body"], delivery["headers"])

for secret, body in [
    ("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", delivery["body"]),
    (delivery["secret"], delivery["body"] + " "),
]:
    try:
        Webhook(secret).verify(body, delivery["headers"])
    except WebhookVerificationError:
        pass
    else:
        sys.exit("a forged delivery was accepted")

json.dump(payload, sys.stdout)
