"""Email over SMTP (the standard library's ``smtplib``, run in a small thread pool so the
event loop never blocks): STARTTLS or TLS from the start, AUTH when configured. The
Message-ID is ``<delivery-id@cityops.notify>`` and ``X-Cityops-Delivery`` carries the
delivery id, so a retried message can be recognised by mail filters and people.

Classified failures: 5xx replies (550 no such mailbox, 553 bad address, 554 refused),
AUTH refused (535), a server without STARTTLS and a certificate that does not verify are
final; 4xx replies (451, 452, 421), refused or dropped connections and timeouts are
retried.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate

from ..model import DeliveryError, Message, PermanentError, TransientError
from ..settings import EmailSettings, read_secret

__all__ = ["EmailChannel", "build_email"]


def build_email(settings: EmailSettings, message: Message, to: str, delivery_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = to
    msg["Subject"] = message.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{delivery_id}@cityops.notify>"
    msg["X-Cityops-Delivery"] = delivery_id
    msg.set_content(message.text)
    return msg


def _by_code(code: int, text: str) -> DeliveryError:
    return (PermanentError if 500 <= code < 600 else TransientError)(f"SMTP {code}: {text}")


def _reply(resp: bytes | str) -> str:
    return (resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp))[:300]


class EmailChannel:
    name = "email"

    def __init__(self, settings: EmailSettings, workers: int = 4) -> None:
        self.settings = settings
        self.password = read_secret(settings.password_file, "SMTP password")
        self.context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify-smtp")

    def send_sync(self, message: Message, to: str, delivery_id: str) -> None:
        s = self.settings
        msg = build_email(s, message, to, delivery_id)
        try:
            if s.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s,
                                                        context=self.context)
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with client:
                client.ehlo()
                if s.security == "starttls":
                    client.starttls(context=self.context)
                    client.ehlo()
                if s.username:
                    client.login(s.username, self.password or "")
                client.send_message(msg, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, resp = next(iter(exc.recipients.values()))
            raise _by_code(code, f"{to} refused: {_reply(resp)}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"SMTP AUTH refused ({exc.smtp_code} {_reply(exc.smtp_error)}); "
                                 "check notify.email.username and password_file") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server: {exc}; set notify.email.security to match "
                                 "the server") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientError(f"SMTP server disconnected: {exc}") from None
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, ...
            raise _by_code(exc.smtp_code, _reply(exc.smtp_error)) from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"SMTP server certificate: {exc.verify_message}; set "
                                 "notify.email.ca_file to the CA that signed it") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None

    async def send(self, message: Message, target: str, *, delivery_id: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, self.send_sync, message, target, delivery_id)

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
