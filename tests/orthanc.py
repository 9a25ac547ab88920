"""A real Orthanc PACS for tests: the Debian binary with its DICOMweb plugin.

Each :class:`OrthancServer` gets its own temporary storage, a free loopback
HTTP port, HTTP basic authentication (``RegisteredUsers``) and the DICOMweb
plugin. ``RemoteAccessAllowed`` is off, so only loopback clients are served.
The DICOM (DIMSE) server is off: the tests speak DICOMweb only, and Orthanc
would bind its DICOM port on every interface.

The server can be killed and started again on the same ports and storage,
for fault tests; :meth:`stop` always leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
USER = "pneumo"
PASSWORD = "s3cret-Orthanc-pw"
DICOMWEB_ROOT = "/dicom-web/"
READY_TIMEOUT_S = 20.0


class OrthancNotInstalledError(RuntimeError):
    """The Debian packages orthanc and orthanc-dicomweb are missing."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: The line ``make test`` prints when it cannot install Orthanc (.ci/install-system-tools): the tests fail with it.
MISSING = "Orthanc with its DICOMweb plugin is missing and cannot be installed here: run 'sudo apt-get install -y orthanc orthanc-dicomweb', or the tests that need it fail"


def dicomweb_plugin_path() -> Path:
    for candidate in DICOMWEB_PLUGIN_CANDIDATES:
        if candidate.exists():
            return candidate
    raise OrthancNotInstalledError(MISSING)


class OrthancServer:
    """One Orthanc process with its own configuration and storage under ``root``."""

    def __init__(self, root: Path, *, user: str = USER, password: str = PASSWORD) -> None:
        if shutil.which(ORTHANC_BINARY) is None:
            raise OrthancNotInstalledError(MISSING)
        self.root = root
        self.user = user
        self.password = password
        self.http_port = free_loopback_port()
        self.dicom_port = free_loopback_port()
        self.storage = root / "storage"
        self.config_path = root / "orthanc.json"
        self.log_path = root / "orthanc.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The base URL in pneumo-batch's spelling (``dicomweb+http://...``)."""
        return f"dicomweb+{self.http_url}{DICOMWEB_ROOT.rstrip('/')}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def _write_config(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "pneumo-batch-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "Plugins": [str(dicomweb_plugin_path())],
            "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": False, "Ssl": False},
            "SaveJobs": False,
            "HttpDescribeErrors": True,
            "StorageCompression": False,
            "OverwriteInstances": False,
            "ExecuteLuaEnabled": False,
            "RestApiWriteToFileSystemEnabled": False,
            "HttpThreadsCount": 8,
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        with self.log_path.open("ab") as log:
            # start_new_session: a signal sent to the test's process group never
            # reaches Orthanc by accident, and we kill exactly the process we started.
            self._process = subprocess.Popen(
                [ORTHANC_BINARY, str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {self.log_path}:\n{self._log_tail()}")
            try:
                reply = requests.get(f"{self.http_url}{DICOMWEB_ROOT}studies", auth=self.auth, timeout=1)
                if reply.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"Orthanc not ready after {READY_TIMEOUT_S} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled cable would look to the client."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if Orthanc does not stop within 10 s."""
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, how)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    # Plumbing for tests: Orthanc's own REST API, not DICOMweb.

    def upload(self, part10: bytes) -> str:
        """Store one Part-10 file through Orthanc's REST API; return its Orthanc id."""
        reply = requests.post(f"{self.http_url}/instances", data=part10, auth=self.auth, timeout=10)
        reply.raise_for_status()
        return str(reply.json()["ID"])

    def delete_instance(self, orthanc_id: str) -> None:
        requests.delete(f"{self.http_url}/instances/{orthanc_id}", auth=self.auth, timeout=10).raise_for_status()

    def instance_count(self) -> int:
        reply = requests.get(f"{self.http_url}/statistics", auth=self.auth, timeout=10)
        reply.raise_for_status()
        return int(reply.json()["CountInstances"])

    def find_instances(self, **tags: str) -> list[str]:
        """Orthanc ids of the instances whose main DICOM tags match ``tags``."""
        query = {"Level": "Instance", "Query": tags}
        reply = requests.post(f"{self.http_url}/tools/find", json=query, auth=self.auth, timeout=10)
        reply.raise_for_status()
        return [str(orthanc_id) for orthanc_id in reply.json()]

    def __enter__(self) -> OrthancServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
