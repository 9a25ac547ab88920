"""Where the PACS is and how we prove who we are: URL, study dates, credentials.

Credentials come from the environment variable ``PNEUMO_BATCH_PACS_AUTH``
or from a file that only its owner may read, never from the command line
(a command line is visible to every user in ``ps``). They never appear in a
message: :meth:`PacsCredentials.redact` scrubs any text we show.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from pneumo_batch.errors import PacsConfigError

URL_SCHEMES = {"dicomweb+http": "http", "dicomweb+https": "https"}
AUTH_ENV = "PNEUMO_BATCH_PACS_AUTH"
BEARER_PREFIX = "Bearer "
REDACTED = "***"


def is_pacs_url(text: str) -> bool:
    """True for ``dicomweb+http://...`` and ``dicomweb+https://...``: the input is a PACS, not a path."""
    return text.split("://", 1)[0].lower() in URL_SCHEMES


@dataclass(frozen=True)
class PacsLocation:
    """A DICOMweb service root, e.g. ``https://pacs.example:8443/dicom-web``."""

    base_url: str

    @property
    def display(self) -> str:
        """How messages name the PACS (the URL carries no credentials: parsing refuses them)."""
        return self.base_url


def parse_pacs_url(url: str) -> PacsLocation:
    """Parse ``dicomweb+http://HOST:PORT/PATH`` or ``dicomweb+https://...`` into an HTTP(S) base URL."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in URL_SCHEMES or not rest:
        raise PacsConfigError("PACS URL must start with dicomweb+http:// or dicomweb+https://")
    parts = urlsplit(f"{URL_SCHEMES[scheme.lower()]}://{rest}")
    if parts.username is not None or parts.password is not None:
        # Not echoed: the refused part is a credential.
        raise PacsConfigError(
            f"PACS URL must not carry credentials; set {AUTH_ENV} or a credentials file instead"
        )
    if not parts.hostname:
        raise PacsConfigError("PACS URL has no host")
    if parts.query or parts.fragment:
        raise PacsConfigError("PACS URL must not have a query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise PacsConfigError("PACS URL has an invalid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port is not None else host
    return PacsLocation(f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}")


@dataclass(frozen=True)
class StudyDateRange:
    """Inclusive range of study dates, as QIDO-RS spells it (``YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD``)."""

    first: dt.date
    last: dt.date

    @property
    def qido_value(self) -> str:
        first, last = self.first.strftime("%Y%m%d"), self.last.strftime("%Y%m%d")
        return first if first == last else f"{first}-{last}"


def parse_study_date(text: str) -> StudyDateRange:
    """``20261130`` -> that day; ``20261101-20261130`` -> that range (inclusive)."""
    first_text, _, last_text = text.strip().partition("-")
    try:
        first = dt.datetime.strptime(first_text, "%Y%m%d").date()
        last = dt.datetime.strptime(last_text, "%Y%m%d").date() if last_text else first
    except ValueError:
        raise PacsConfigError(f"study date must be YYYYMMDD or YYYYMMDD-YYYYMMDD, got {text!r}") from None
    if last < first:
        raise PacsConfigError(f"study date range ends before it starts: {text!r}")
    return StudyDateRange(first, last)


@dataclass(frozen=True)
class PacsCredentials(requests.auth.AuthBase):
    """HTTP basic (``user:password``) or bearer (``Bearer TOKEN``) credentials; never printed."""

    kind: str
    user: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.kind == "bearer":
            request.headers["Authorization"] = f"{BEARER_PREFIX}{self.secret}"
            return request
        return requests.auth.HTTPBasicAuth(self.user, self.secret)(request)

    def __repr__(self) -> str:
        return f"PacsCredentials(kind={self.kind!r}, {REDACTED})"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with every credential part replaced by ``***``."""
        for part in (self.secret, self.user):
            if part:
                text = text.replace(part, REDACTED)
        return text


def parse_credentials(text: str) -> PacsCredentials:
    text = text.strip()
    if text.startswith(BEARER_PREFIX):
        token = text[len(BEARER_PREFIX) :].strip()
        if not token:
            raise PacsConfigError("PACS bearer token is empty")
        return PacsCredentials(kind="bearer", secret=token)
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise PacsConfigError("PACS credentials must be 'user:password' or 'Bearer TOKEN'")
    return PacsCredentials(kind="basic", user=user, secret=password)


def read_credentials_file(path: Path) -> PacsCredentials:
    """Credentials from a file that only its owner may read (like ssh refuses a shared key)."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PacsConfigError(
                f"PACS credentials file is readable by group or others; run: chmod 600 {path}"
            )
        return parse_credentials(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PacsConfigError(f"cannot read PACS credentials file {path}: {error.strerror}") from None


def load_credentials(
    file: Path | None = None, environ: Mapping[str, str] | None = None
) -> PacsCredentials | None:
    """``PNEUMO_BATCH_PACS_AUTH`` if set, else ``file`` if given, else None (an open PACS)."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(AUTH_ENV, "").strip()
    if from_env:
        return parse_credentials(from_env)
    if file is not None:
        return read_credentials_file(file)
    return None
