"""Verify mint-audit's signed evidence without mint-audit: DSSE, in-toto and ed25519 only.

An independent check for regulators (and our tests): it shares no code with `mint verify`.
It reads one DSSE envelope (a console's evidence bundle, a signed fleet report) or a log of
them (one envelope per line), checks each signature over DSSE's pre-authentication encoding
with the public key the verifier trusts, and for a log the chain: sequence numbers from 0,
each entry naming the sha256 of the previous one's payload, one log id.

    python verify_evidence.py --fingerprint sha256:... FILE
    python verify_evidence.py --key operator.pub FILE

Exit status: 0 verified, 1 not verified (what failed is printed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class NotVerified(Exception):
    """The file, or one of its entries, does not verify."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def open_envelope(envelope: dict[str, Any], trusted: Ed25519PublicKey) -> tuple[dict[str, Any], bytes]:
    """The statement an envelope carries, once a signature by `trusted` verifies; and its payload."""
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise NotVerified(f"payload type {envelope.get('payloadType')!r} is not {PAYLOAD_TYPE}")
    payload = base64.b64decode(envelope["payload"], validate=True)
    message = pae(PAYLOAD_TYPE, payload)
    for entry in envelope.get("signatures", []):
        try:
            trusted.verify(base64.b64decode(entry["sig"], validate=True), message)
        except (InvalidSignature, ValueError, KeyError):
            continue
        statement = json.loads(payload)
        if statement.get("_type") != STATEMENT_TYPE:
            raise NotVerified(f"statement type {statement.get('_type')!r} is not {STATEMENT_TYPE}")
        named = statement["predicate"]["signer"]["fingerprint"]
        if named != fingerprint(trusted):
            raise NotVerified(f"the statement names {named} as its signer")
        return statement, payload
    raise NotVerified(f"no signature verifies with {fingerprint(trusted)}")


def check_chain(entries: list[tuple[dict[str, Any], bytes]]) -> str:
    """The log's id, once every entry follows the one before it."""
    log_id = ""
    previous = None
    for number, (statement, payload) in enumerate(entries):
        link = statement["predicate"].get("chain")
        if link is None:
            raise NotVerified(f"entry {number + 1} is not an entry of a log")
        if number == 0:
            log_id = link["log"]
        if link["log"] != log_id:
            raise NotVerified(f"entry {number + 1} belongs to another log ({link['log']})")
        if link["sequence"] != number:
            raise NotVerified(f"entry {number + 1} has sequence {link['sequence']}: entries were removed or reordered")
        if link.get("previous") != previous:
            raise NotVerified(f"entry {number + 1} does not follow the entry before it")
        previous = hashlib.sha256(payload).hexdigest()
    return log_id


def trusted_key(args: argparse.Namespace, first: dict[str, Any]) -> Ed25519PublicKey:
    if args.key:
        loaded = serialization.load_pem_public_key(Path(args.key).read_bytes())
        if not isinstance(loaded, Ed25519PublicKey):
            raise NotVerified(f"{args.key} is not an ed25519 public key")
        return loaded
    # The key the statement names, accepted only if its fingerprint is the trusted one.
    statement = json.loads(base64.b64decode(first["payload"], validate=True))
    named = Ed25519PublicKey.from_public_bytes(bytes.fromhex(statement["predicate"]["signer"]["public_key"]))
    if fingerprint(named) != args.fingerprint:
        raise NotVerified(f"signed by {fingerprint(named)}, not by {args.fingerprint}")
    return named


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--key", help="the signer's public key (PEM)")
    trust.add_argument("--fingerprint", help="the signer's fingerprint, sha256:...")
    parser.add_argument("file")
    args = parser.parse_args()
    text = Path(args.file).read_text()
    try:
        envelopes = [json.loads(text)]
    except json.JSONDecodeError:
        envelopes = [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        key = trusted_key(args, envelopes[0])
        entries = [open_envelope(envelope, key) for envelope in envelopes]
        is_log = len(entries) > 1 or entries[0][0]["predicate"].get("chain") is not None
        if is_log:
            log_id = check_chain(entries)
            print(f"verified: log {log_id}, {len(entries)} entries in order, signed by {fingerprint(key)}")
        else:
            print(f"verified: {entries[0][0]['predicateType']} signed by {fingerprint(key)}")
    except (NotVerified, KeyError, ValueError) as e:
        print(f"NOT verified: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
