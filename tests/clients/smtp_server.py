#!/usr/bin/env python3
"""A real SMTP server for tests/email_sink.rs, built on aiosmtpd.

It speaks STARTTLS (required before AUTH) or implicit TLS, checks AUTH PLAIN and LOGIN
against one user, answers RCPT with 451 for the first --defer recipients and with 550 for
any address at --reject-domain, and appends each accepted message, parsed by Python's
email package, as one JSON line to --out. It prints "ready" once it accepts connections
and runs until killed.
"""

import argparse
import email
import email.policy
import json
import ssl
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--mode", choices=["starttls", "tls", "none"], required=True)
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--user")
parser.add_argument("--password")
parser.add_argument("--only-login", action="store_true", help="offer AUTH LOGIN only")
parser.add_argument("--defer", type=int, default=0)
parser.add_argument("--reject-domain", default="rejected.example")
parser.add_argument("--out", required=True)
args = parser.parse_args()

state = {"defer": args.defer}


def body_of(message, subtype):
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part.get_content()


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@" + args.reject_domain):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if state["defer"] > 0:
            state["defer"] -= 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "content_type": message.get_content_type(),
            "text": body_of(message, "plain"),
            "html": body_of(message, "html"),
        }
        with open(args.out, "a") as out:
            out.write(json.dumps(record) + "\n")
        return "250 2.0.0 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


context = None
if args.mode != "none":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Usable on both sides: the controller's own readiness check connects with it.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(args.cert, args.key)

kwargs = {}
if args.user:
    # With implicit TLS the whole session is encrypted, but aiosmtpd only counts
    # STARTTLS as TLS when it decides whether to offer AUTH.
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.mode == "starttls")
    if args.only_login:
        kwargs["auth_exclude_mechanism"] = ["PLAIN"]
if args.mode == "starttls":
    kwargs.update(tls_context=context, require_starttls=True)

controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=args.port,
    ssl_context=context if args.mode == "tls" else None,
    **kwargs,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
