#!/usr/bin/env python3
"""A real SMTP server for Portcullis' email tests, on a loopback port (aiosmtpd).

    smtp_server.py --dir MAILDIR [--port 0] [--mode plain|starttls|implicit]
                   [--cert CERT.pem --key KEY.pem] [--auth USER:PASSWORD]
                   [--refuse ADDRESS]...

Modes: `plain` (no TLS), `starttls` (STARTTLS offered and required before MAIL), `implicit`
(TLS from the first byte on the listening socket). `--auth` turns on AUTH LOGIN/PLAIN with one
fixed account and makes authentication mandatory (530 before MAIL otherwise); in `starttls` mode
AUTH is only offered after STARTTLS. `--refuse` answers `550 no such user` to RCPT TO for that
address.

Every accepted message is written to MAILDIR as `msg-<pid>-<n>.json`
(`{"mail_from", "rcpt_tos", "content", "auth_user", "tls"}`), atomically (temp file + rename).
Once listening the server prints `ready <port>` on stdout and flushes, so the test knows the
(ephemeral) port. It runs until killed or until its stdin closes (the test process died).
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir, refused):
        self.maildir = maildir
        self.refused = {a.lower() for a in refused}
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        content = envelope.original_content or envelope.content
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        auth_user = None
        auth_data = getattr(session, "auth_data", None)
        if session.authenticated and isinstance(auth_data, LoginPassword):
            auth_user = auth_data.login.decode("utf-8", errors="replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "content": content,
            "auth_user": auth_user,
            "tls": session.ssl is not None,
        }
        final = os.path.join(self.maildir, "msg-%d-%04d.json" % (os.getpid(), n))
        tmp = final + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, final)
        return "250 Message accepted for delivery"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, auth_data=auth_data if ok else None)


class TlsSession(SMTP):
    """Marks implicit-TLS sessions as encrypted (aiosmtpd only does so for STARTTLS)."""

    def __init__(self, *args, implicit=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._implicit = implicit

    def connection_made(self, transport):
        super().connection_made(transport)
        if self._implicit and self.session is not None and self.session.ssl is None:
            self.session.ssl = transport.get_extra_info("ssl_object") or True


async def main():
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=["plain", "starttls", "implicit"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--refuse", action="append", default=[])
    args = p.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    handler = Handler(args.dir, args.refuse)

    ctx = None
    if args.mode != "plain":
        if not (args.cert and args.key):
            p.error("--cert and --key are required for TLS modes")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)

    kwargs = {"hostname": "localhost", "timeout": 30}
    if args.mode == "starttls":
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = True
    if args.auth:
        user, _, password = args.auth.partition(":")
        kwargs["authenticator"] = Authenticator(user, password)
        kwargs["auth_required"] = True
        # STARTTLS: AUTH only once the channel is encrypted. Implicit TLS is encrypted from the
        # start but aiosmtpd does not know it; plain mode tests AUTH on a trusted link.
        kwargs["auth_require_tls"] = args.mode == "starttls"

    loop = asyncio.get_running_loop()
    implicit = args.mode == "implicit"

    def factory():
        return TlsSession(handler, implicit=implicit, loop=loop, **kwargs)

    server = await loop.create_server(
        factory,
        host="127.0.0.1",
        port=args.port,
        ssl=ctx if implicit else None,
    )
    port = server.sockets[0].getsockname()[1]
    print("ready %d" % port, flush=True)

    # Exit when the parent closes our stdin (it died or is done with us).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(1024):
        pass
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
