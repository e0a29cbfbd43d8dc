"""AWS Signature Version 4 on Personalize's paths (``/recommendations``, ``/personalize-ranking``,
``/events``, ``/items``, ...): who may call them.

=================================  =============================================================
``MFREC_AUTH_KEYS``                requests to Personalize's paths
=================================  =============================================================
unset                              accepted without checking from loopback clients (127.0.0.1,
                                   ::1); refused (403) from any other address
``AKID:secret[,AKID2:secret2]``    each request's signature recomputed with botocore's own
or the path of a file of such      SigV4 signer and compared: a missing or wrong signature, an
pairs (one per line or comma-      unknown key id, or a timestamp more than 5 minutes from the
separated)                         server's clock is a 403 in Personalize's error shape
``none``                           accepted without checking from anywhere (only behind
                                   something else that authenticates)
=================================  =============================================================

This is the setting for any server reachable from a network. ``/ping`` and ``/invocations``
stay unauthenticated, as SageMaker requires (its own endpoint authenticates callers).
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import os
from collections.abc import Mapping
from datetime import timezone
from urllib.parse import quote

from flask import current_app, request

from mfrec.serve.codecs import HttpError
from mfrec.train.errors import ConfigError

ENV = "MFREC_AUTH_KEYS"
MAX_SKEW = datetime.timedelta(minutes=5)
ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "personalize"  # the signing name of personalize-runtime and personalize-events
_EXTENSION = "mfrec.auth"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class Forbidden(HttpError):
    """A request refused by the signature check; :attr:`code` is Personalize's error name."""

    status, code = 403, "AccessDeniedException"


class MissingToken(Forbidden):
    code = "MissingAuthenticationTokenException"


class UnknownKey(Forbidden):
    code = "UnrecognizedClientException"


class BadSignature(Forbidden):
    code = "InvalidSignatureException"


def read_keys(environ: Mapping[str, str] | None = None) -> dict[str, str] | str | None:
    """``MFREC_AUTH_KEYS`` as {access key id: secret}, ``"none"``, or None when unset.

    Raises
    ------
    ConfigError
        A pair is not ``AKID:secret``, the file cannot be read, or botocore is missing.
    """
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not text:
        return None
    if text.lower() == "none":
        return "none"
    if os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise ConfigError(f"{ENV}: cannot read {text}: {exc.strerror}") from None
    keys = {}
    for pair in text.replace("\n", ",").split(","):
        if not pair.strip():
            continue
        key_id, colon, secret = pair.strip().partition(":")
        if not (colon and key_id and secret):
            raise ConfigError(
                f"{ENV}: each key is ACCESS_KEY_ID:SECRET (comma-separated or one per line in a "
                f"file); got an entry starting {pair.strip()[:4]!r}"
            )
        keys[key_id] = secret
    if not keys:
        raise ConfigError(f"{ENV} holds no key; give AKID:secret pairs, or unset it")
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{ENV} needs botocore to check signatures: pip install 'mfrec[auth]'"
        ) from None
    return keys


def install(app) -> None:
    """Read ``MFREC_AUTH_KEYS`` for ``app`` now, so that a bad value stops the server at start.

    Raises
    ------
    ConfigError
    """
    app.extensions[_EXTENSION] = read_keys()


def _keys():
    if _EXTENSION not in current_app.extensions:  # an app that did not install it
        current_app.extensions[_EXTENSION] = read_keys()
    return current_app.extensions[_EXTENSION]


def require_signature() -> None:
    """Flask ``before_request`` of Personalize's blueprints: returns when the request may go on,
    else raises a :class:`Forbidden` (answered in Personalize's shape)."""
    keys = _keys()
    if keys == "none":
        return
    if keys is None:
        if _loopback(request.remote_addr):
            return
        raise Forbidden(
            f"this server answers Personalize's paths only from loopback clients because {ENV} "
            f"is not set; set {ENV}=ACCESS_KEY_ID:SECRET and sign requests (boto3 does)"
        )
    verify(keys, request.get_data(cache=True))


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _parse(header: str) -> dict[str, str]:
    """The fields of ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise MissingToken(f"the Authorization header must be {ALGORITHM} (AWS Signature V4)")
    fields = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
        raise BadSignature("the Authorization header lacks Credential, SignedHeaders or Signature")
    return fields


def verify(keys: Mapping[str, str], body: bytes) -> None:
    """Check the current request's SigV4 signature against ``keys``, by signing the same request
    again with botocore's :class:`~botocore.auth.SigV4Auth`.

    Raises
    ------
    Forbidden
        The signature is missing or wrong, the key unknown, or the time too far off.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    header = request.headers.get("Authorization")
    if not header:
        raise MissingToken(
            "Missing Authentication Token: sign the request with AWS Signature V4 (boto3 does) "
            f"using a key of {ENV}"
        )
    fields = _parse(header)
    key_id, _, scope = fields["Credential"].partition("/")
    date, region, service, terminator = (scope.split("/") + ["", "", "", ""])[:4]
    if key_id not in keys:
        raise UnknownKey(
            f"The security token included in the request is invalid: access key id "
            f"{key_id[:40]!r} is not one of {ENV}"
        )
    stamp = request.headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.datetime.strptime(stamp, _AMZ_DATE).replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadSignature(
            "the request has no valid X-Amz-Date header (YYYYMMDDTHHMMSSZ)"
        ) from None
    now = datetime.datetime.now(timezone.utc)
    if abs(now - signed_at) > MAX_SKEW:
        raise BadSignature(
            f"Signature expired: {stamp} is more than 5 minutes from the server's time "
            f"{now.strftime(_AMZ_DATE)}; check the client's clock"
        )
    if date != stamp[:8] or service != SERVICE or terminator != "aws4_request" or not region:
        raise BadSignature(
            f"the credential scope must be <date of X-Amz-Date>/<region>/{SERVICE}/aws4_request"
        )
    names = [name for name in fields["SignedHeaders"].split(";") if name]
    if "host" not in names:
        raise BadSignature("the signature must cover the Host header")
    headers = {name: request.headers.get(name, "") for name in names}
    path = (request.environ.get("RAW_URI") or quote(request.path)).split("?", 1)[0]
    query = request.query_string.decode("latin-1")
    url = f"http://{request.headers.get('Host', '')}{path}" + (f"?{query}" if query else "")
    signed = AWSRequest(method=request.method, url=url, headers=headers, data=body)
    signed.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, keys[key_id]), service, region)
    expected = signer.signature(
        signer.string_to_sign(signed, signer.canonical_request(signed)), signed
    )
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise BadSignature(
            "The request signature we calculated does not match the signature you provided; "
            f"check the secret of access key id {key_id[:40]!r} in {ENV} and the client's"
        )
