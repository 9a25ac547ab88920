"""Films from a PACS over DICOMweb: QIDO-RS search, WADO-RS retrieve, STOW-RS store.

One retry policy for every request, ours, not dicomweb-client's (which
retries only a few status codes and never a dropped connection):
connection errors, timeouts and 5xx are retried with exponential backoff;
when the retries run out the PACS is unavailable and the run stops cleanly
(a rerun resumes by SOP Instance UID). 401/403 are refused credentials,
404/410 on one instance is a per-instance result, not an exception.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pneumo_batch.errors import PacsAuthError, PacsError, PacsStoreError, PacsUnavailableError, ReportError
from pneumo_batch.pacs.location import PacsCredentials, PacsLocation, StudyDateRange

if TYPE_CHECKING:
    import pydicom
    from dicomweb_client import DICOMwebClient

T = TypeVar("T")

#: The modalities a chest film comes as; the header scope rules decide the rest.
FILM_MODALITIES = ("CR", "DX")
GONE_REASON = "instance gone from PACS"
UNREADABLE_REASON = "unreadable DICOM from PACS"
RETRIABLE_STATUS = frozenset({408, 429})
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"


@dataclass(frozen=True)
class PacsSettings:
    """Timeouts, retries and parallelism; the defaults suit a hospital LAN."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    workers: int = 4
    max_in_flight: int = 8
    page_size: int = 500
    ca_bundle: Path | None = None
    """A CA bundle for a hospital's own certificate authority; TLS is always verified."""
    http_compression: bool = False
    """Ask for gzip replies. Off: films are mostly compressed already, and gzip made
    Orthanc's WADO-RS 10x slower on localhost (50 ms against 4 ms for a 0.4 MB JPEG film)."""


@dataclass(frozen=True, order=True)
class InstanceRef:
    study_uid: str
    series_uid: str
    sop_uid: str


@dataclass(frozen=True)
class RetrievedInstance:
    """One instance's outcome: Part-10 bytes, or an error reason (short phrase first)."""

    ref: InstanceRef
    part10: bytes | None = None
    error: str | None = None


class _InstanceGone(Exception):
    """404/410 on one instance: turned into a RetrievedInstance with GONE_REASON."""


class _Refused(PacsError):
    """Another 4xx: the PACS will not serve this request, retrying will not help."""


class _StoreRefused(PacsStoreError):
    """The STOW-RS reply lists instances the PACS did not take (its Failed SOP Sequence)."""


class PacsSource:
    """A DICOMweb service with credentials; thread-safe (one HTTP session per worker thread)."""

    def __init__(
        self,
        location: PacsLocation,
        credentials: PacsCredentials | None = None,
        settings: PacsSettings | None = None,
    ) -> None:
        self.location = location
        self.credentials = credentials
        self.settings = settings or PacsSettings()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes without its per-thread HTTP sessions.
        return {key: value for key, value in vars(self).items() if key != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._local = threading.local()

    # -- plumbing -----------------------------------------------------------

    def _client(self) -> DICOMwebClient:
        client = getattr(self._local, "client", None)
        if client is None:
            import requests
            from dicomweb_client import DICOMwebClient

            session = requests.Session()
            session.auth = self.credentials
            session.verify = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
            session.trust_env = False  # no ~/.netrc credentials or proxies slipping in
            if not self.settings.http_compression:
                session.headers["Accept-Encoding"] = "identity"
            client = DICOMwebClient(
                self.location.base_url,
                session=session,
                permissive_uid=True,
                timeout=(self.settings.connect_timeout_s, self.settings.read_timeout_s),
            )
            client.set_http_retry_params(retry=False)
            self._local.client = client
        return client

    def _call(self, what: str, request: Callable[[DICOMwebClient], T]) -> T:
        """Run ``request`` with our retry policy; translate failures into domain errors."""
        import requests

        attempts = self.settings.retries + 1
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.backoff_max_s))
            try:
                return request(self._client())
            except requests.HTTPError as error:
                status = error.response.status_code if error.response is not None else 0
                if status in (401, 403):
                    raise PacsAuthError(
                        f"PACS refused the credentials (HTTP {status}) at {self.location.display}; "
                        "check PNEUMO_BATCH_PACS_AUTH or the credentials file"
                    ) from None
                if status in (404, 410):
                    raise _InstanceGone() from None
                if status < 500 and status not in RETRIABLE_STATUS:
                    raise _Refused(f"PACS refused the {what}: HTTP {status}") from None
                last_problem = f"HTTP {status}"
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
                # ChunkedEncodingError: the connection dropped in the middle of a reply.
                # The exception text names the URL and socket details; the type is enough.
                last_problem = type(error).__name__
        raise PacsUnavailableError(
            f"PACS unavailable at {self.location.display}: {last_problem} "
            f"on {what}, after {attempts} attempt{'s' if attempts > 1 else ''}"
        )

    # -- QIDO-RS -----------------------------------------------------------

    def check(self) -> None:
        """Fail fast: :class:`PacsUnavailableError` or :class:`PacsAuthError` before any work."""
        try:
            self._call("connection check", lambda client: client.search_for_studies(limit=1))
        except _InstanceGone:
            raise PacsError(f"no DICOMweb service at {self.location.display} (HTTP 404)") from None

    def search_films(
        self, study_dates: StudyDateRange, modalities: Sequence[str] = FILM_MODALITIES
    ) -> list[InstanceRef]:
        """Every instance of ``modalities`` in studies of ``study_dates``, sorted, each once."""
        found: set[InstanceRef] = set()
        for modality in modalities:
            # One query per modality: multi-value matching ("CR,DX" / "CR\\DX") differs between PACSes.
            found.update(self._search_pages({"Modality": modality, "StudyDate": study_dates.qido_value}))
        return sorted(found)

    def search_reports(self, study_uid: str) -> set[str]:
        """SOP Instance UIDs of the structured reports (modality SR) in one study."""
        return {ref.sop_uid for ref in self._search_pages({"Modality": "SR"}, study_uid)}

    def _search_pages(self, filters: dict[str, str], study_uid: str | None = None) -> Iterator[InstanceRef]:
        offset = 0
        while True:
            page = self._call(
                "search",
                lambda client: client.search_for_instances(
                    study_instance_uid=study_uid, search_filters=filters, limit=self.settings.page_size,
                    offset=offset,
                ),
            )
            yield from (_instance_ref(result) for result in page)
            if len(page) < self.settings.page_size:
                return
            offset += len(page)

    # -- WADO-RS -----------------------------------------------------------

    def retrieve(self, ref: InstanceRef) -> RetrievedInstance:
        """One instance as Part-10 bytes in its stored transfer syntax, or a per-instance error."""
        from pydicom.errors import InvalidDicomError
        try:
            dataset = self._call(
                "retrieve",
                lambda client: client.retrieve_instance(ref.study_uid, ref.series_uid, ref.sop_uid),
            )
        except _InstanceGone:
            return RetrievedInstance(ref, error=GONE_REASON)
        except _Refused as refused:
            return RetrievedInstance(ref, error=str(refused))
        except (ValueError, EOFError, InvalidDicomError) as error:  # a malformed reply
            return RetrievedInstance(ref, error=f"{UNREADABLE_REASON}: {type(error).__name__}")
        try:  # the elements stay raw (never converted), so writing them back neither warns nor checks values
            return RetrievedInstance(ref, part10=_part10_bytes(dataset))
        except Exception as error:  # noqa: BLE001 - a value pydicom will not write back raises many types
            return RetrievedInstance(ref, error=f"{UNREADABLE_REASON}: {type(error).__name__}")

    def retrieve_metadata(self, ref: InstanceRef) -> list[dict[str, Any]] | dict[str, Any] | None:
        """One instance's header as WADO-RS metadata (DICOM JSON: no pixels are sent), or None when it is gone.

        Parse it with :func:`header_from_metadata` on one thread: parsing warns,
        and silencing warnings is process-wide.
        """
        try:
            return self._call(
                "metadata retrieve",
                lambda client: client.retrieve_instance_metadata(ref.study_uid, ref.series_uid, ref.sop_uid),
            )
        except (_InstanceGone, _Refused):
            return None

    def retrieve_all(self, refs: Iterable[InstanceRef]) -> Iterator[RetrievedInstance]:
        """Retrieve in parallel, in input order, with at most ``max_in_flight`` pending.

        Memory stays bounded by the window, not by the night's size. A
        :class:`PacsUnavailableError` or :class:`PacsAuthError` stops the stream:
        what was yielded before it is complete and can be written.
        """
        window: deque[Future[RetrievedInstance]] = deque()
        with ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="pacs") as pool:
            try:
                for ref in refs:
                    if len(window) >= max(self.settings.max_in_flight, 1):
                        yield window.popleft().result()
                    window.append(pool.submit(self.retrieve, ref))
                while window:
                    yield window.popleft().result()
            finally:
                for pending in window:
                    pending.cancel()

    # -- STOW-RS -----------------------------------------------------------

    def store_one(self, dataset: pydicom.Dataset) -> str | None:
        """Store one report; ``None`` when stored, else why the PACS refused it (no value quoted).

        Raises :class:`PacsStoreError` when the PACS has no STOW-RS service,
        :class:`PacsUnavailableError` or :class:`PacsAuthError` as every request does.
        """
        try:
            self.store([dataset])
        except _Refused as refused:
            return str(refused)
        except _StoreRefused as refused:
            return str(refused)
        return None

    def store(self, datasets: Sequence[pydicom.Dataset]) -> None:
        """Store ``datasets`` in one STOW-RS request; re-storing a UID we built is idempotent."""
        if not datasets:
            return
        try:
            reply = self._call("store", lambda client: client.store_instances(list(datasets)))
        except _InstanceGone:
            raise PacsStoreError(f"PACS at {self.location.display} has no STOW-RS service (HTTP 404)") from None
        failed = reply.get("FailedSOPSequence", [])
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise _StoreRefused(
                f"PACS refused {len(failed)} of {len(datasets)} stored instances (failure reasons {', '.join(reasons)})"
            )


def header_from_metadata(metadata: Any) -> pydicom.Dataset:
    """A header from DICOM JSON; bulk data (pixels, overlays) stays on the PACS.

    Raises :class:`~pneumo_batch.errors.ReportError` (by type, never quoting a value) when it cannot be parsed.
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings quote values
            return pydicom.Dataset.from_json(metadata, bulk_data_uri_handler=lambda *_: b"")
    except Exception as error:  # noqa: BLE001 - malformed JSON values raise many types
        raise ReportError(f"report not built: header unreadable ({type(error).__name__})") from None


def _instance_ref(result: dict[str, Any]) -> InstanceRef:
    def uid(tag: str) -> str:
        return str(result[tag]["Value"][0])

    return InstanceRef(uid(_STUDY_UID), uid(_SERIES_UID), uid(_SOP_UID))


def _part10_bytes(dataset: pydicom.Dataset) -> bytes:
    """The dataset as a Part-10 file, pixel data left in its transfer syntax."""
    import pydicom

    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()
