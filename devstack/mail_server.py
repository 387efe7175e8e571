"""A loopback SMTP server that delivers every message into a Maildir (the dev stack's inbox)."""

from __future__ import annotations

import asyncio
import mailbox
import signal
from email import message_from_bytes
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MaildirHandler:
    """Stores each accepted message, with its envelope recipients, in a Maildir."""

    def __init__(self, maildir: Path) -> None:
        maildir.parent.mkdir(parents=True, exist_ok=True)
        self._box = mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=SMTP_POLICY
        )
        message["X-Envelope-From"] = envelope.mail_from
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self._box.add(message)
        return "250 Message accepted for delivery"


def start_mail_server(maildir: Path, host: str, port: int) -> Controller:
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port)
    controller.start()
    return controller


def serve_forever(maildir: Path, host: str, port: int) -> None:
    """Run until SIGINT or SIGTERM."""
    controller = start_mail_server(maildir, host, port)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()
        loop.close()
