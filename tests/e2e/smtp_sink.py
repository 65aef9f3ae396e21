"""A real SMTP server for the notify tests (aiosmtpd): every mail it takes is written to
OUT_DIR as one JSON file: envelope, subject, Message-ID, the text and HTML bodies, and
the PNG images (base64) with their Content-IDs, as Python's e-mail parser reads them.

usage: smtp_sink.py PORT OUT_DIR   (prints "ready" once it listens on 127.0.0.1:PORT)
"""
import base64
import email
import json
import os
import sys
import time
from email import policy

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        mail = email.message_from_bytes(envelope.content, policy=policy.default)
        text = mail.get_body(("plain",))
        html = mail.get_body(("html",))
        images = [p for p in mail.walk() if p.get_content_type() == "image/png"]
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(mail["subject"]),
            "message_id": str(mail["message-id"]),
            "content_type": mail.get_content_type(),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "images": [base64.b64encode(p.get_content()).decode() for p in images],
            "content_ids": [str(p["content-id"]) for p in images],
        }
        self.count += 1
        path = os.path.join(self.out_dir, f"{self.count:05}.json")
        with open(path + ".part", "w") as f:
            json.dump(record, f)
        os.rename(path + ".part", path)
        return "250 OK"


def main():
    port, out_dir = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
