"""Signed links to a municipality's field report, for the staff who get the "scored" mail.

A staff member clicking the link in a mail has a browser, not an API key: the link itself
carries the permission, for one municipality, until it expires. Notification signs it,
assessment checks it; both derive the signing key from the services' shared key
(`WOK_SERVICE_KEY`), so no further secret is handed around and rotating the service key
ends every link. The signature covers the AGS and the expiry, so neither can be changed.
Plain functions: no framework, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

PURPOSE = b"wok field report link v1"


def _signing_key(service_key: str) -> bytes:
    return hmac.new(service_key.encode(), PURPOSE, hashlib.sha256).digest()


def report_signature(*, service_key: str, ags: str, expires: int) -> str:
    """The signature of a link to `ags`'s report valid until `expires` (Unix seconds)."""
    message = f"{ags}:{expires}".encode()
    return hmac.new(_signing_key(service_key), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ReportLink:
    expires: int
    signature: str

    def query(self) -> dict[str, str]:
        return {"expires": str(self.expires), "signature": self.signature}


def sign_report_link(*, service_key: str, ags: str, now: float, valid_for_s: int) -> ReportLink:
    expires = int(now) + valid_for_s
    return ReportLink(expires, report_signature(service_key=service_key, ags=ags, expires=expires))


def report_link_problem(
    *, service_key: str, ags: str, expires: int, signature: str, now: float
) -> str | None:
    """Why a link does not open `ags`'s report, or None if it does."""
    if not service_key:
        return "report links are off: the services share no key (WOK_SERVICE_KEY)"
    wanted = report_signature(service_key=service_key, ags=ags, expires=expires)
    if not hmac.compare_digest(wanted, signature):
        return "the link's signature does not match (a changed or foreign link)"
    if expires < now:
        return "the link has expired: open the report with the municipality's key or a newer mail"
    return None
