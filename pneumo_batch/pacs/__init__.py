"""The PACS link (issue 17): films in over DICOMweb (QIDO-RS, WADO-RS), results out as DICOM SR (STOW-RS).

Heavy dependencies (dicomweb-client, pydicom, highdicom) are imported where used.
"""

from pneumo_batch.errors import (
    PacsAuthError,
    PacsConfigError,
    PacsError,
    PacsStoreError,
    PacsUnavailableError,
)
from pneumo_batch.pacs.location import (
    AUTH_ENV,
    PacsCredentials,
    PacsLocation,
    StudyDateRange,
    is_pacs_url,
    load_credentials,
    parse_pacs_url,
    parse_study_date,
)
from pneumo_batch.pacs.source import GONE_REASON, InstanceRef, PacsSettings, PacsSource, RetrievedInstance

__all__ = [
    "AUTH_ENV",
    "GONE_REASON",
    "InstanceRef",
    "PacsAuthError",
    "PacsConfigError",
    "PacsCredentials",
    "PacsError",
    "PacsLocation",
    "PacsSettings",
    "PacsSource",
    "PacsStoreError",
    "PacsUnavailableError",
    "RetrievedInstance",
    "StudyDateRange",
    "is_pacs_url",
    "load_credentials",
    "parse_pacs_url",
    "parse_study_date",
]
