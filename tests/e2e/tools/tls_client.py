"""A TLS echo client for the e2e tests, on Python's own ssl module.

Handshakes with a switchboard tls: listener (verifying its certificate against --ca),
sends --message, reads the echo back, and prints one line per connection, flushed at
once:

    ok SHA256-OF-THE-SERVER-CERTIFICATE TLS-VERSION REPLY
    fail ERROR

--count N repeats that N times (a fresh connection and full handshake each time);
--until-fingerprint FP stops once --after handshakes have seen that certificate;
--seconds bounds the whole run. Exits 0 whatever the handshakes did: the test decides.
"""

import argparse
import hashlib
import socket
import ssl
import time

parser = argparse.ArgumentParser()
parser.add_argument("--addr", required=True, help="HOST:PORT")
parser.add_argument("--ca", required=True, help="the CA file the server certificate must chain to")
parser.add_argument("--cert", help="client certificate (PEM)")
parser.add_argument("--key", help="its key (PEM)")
parser.add_argument("--message", default="spam")
parser.add_argument("--tls-version", choices=["1.2", "1.3"])
parser.add_argument("--count", type=int, default=1)
parser.add_argument("--until-fingerprint")
parser.add_argument("--after", type=int, default=1)
parser.add_argument("--seconds", type=float, default=30.0)
args = parser.parse_args()

host, port = args.addr.rsplit(":", 1)
context = ssl.create_default_context(cafile=args.ca)
if args.cert:
    context.load_cert_chain(args.cert, args.key)
if args.tls_version == "1.2":
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
elif args.tls_version == "1.3":
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
want = b"Echo=>" + args.message.encode()


def once():
    """One connection: the line to print, and the server certificate's fingerprint."""
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            fingerprint = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
            tls.sendall(args.message.encode())
            reply = b""
            while len(reply) < len(want):
                chunk = tls.recv(len(want) - len(reply))
                if not chunk:
                    break
                reply += chunk
            if reply != want:
                return f"fail reply {reply!r} (expected {want!r})", fingerprint
            return f"ok {fingerprint} {tls.version()} {reply.decode()}", fingerprint


deadline = time.monotonic() + args.seconds
seen = 0
for _ in range(args.count):
    if time.monotonic() > deadline:
        print("stopped: --seconds ran out", flush=True)
        break
    try:
        line, fingerprint = once()
    except (OSError, ssl.SSLError) as e:
        print(f"fail {type(e).__name__}: {e}", flush=True)
        continue
    print(line, flush=True)
    if args.until_fingerprint and fingerprint == args.until_fingerprint and line.startswith("ok "):
        seen += 1
        if seen >= args.after:
            break
