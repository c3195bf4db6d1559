"""``xraydenoise serve`` as a hospital would use it: dcmtk sends, a real Orthanc receives.

Every test starts its own processes on free loopback ports: Orthanc (Debian ``orthanc``) as
the PACS, checked through its REST API, the node itself (``python -m xraydenoise.cli serve``)
and dcmtk's ``echoscu`` / ``storescu`` (Debian ``dcmtk``) as the modality. A missing tool is a
failure, never a skip: ``tests/setup_system_deps.sh`` installs them.

The radiographs are 256x256 crops of real ones written as 12-bit DX and CR instances, and most
tests use the fast ``gaussian`` filter: they test the node, not the denoiser.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.dicom_corpus import dx12_dataset
from xraydenoise.settings import data_dir

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "src" / "xraydenoise" / "samples"
SETUP_HINT = "run tests/setup_system_deps.sh (Debian packages orthanc and dcmtk)"
NODE_AET, MODALITY_AET, PACS_AET = "XRAYDENOISE", "MODALITY", "PACS"
FAST = ("--method", "gaussian", "--sigma", "5")
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


# --------------------------------------------------------------------------- helpers


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: {SETUP_HINT}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_json(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


class Orthanc:
    """A throwaway Orthanc on loopback ports, with its storage in ``folder``.

    ``config``: entries merged over the test configuration (AE title, modalities); ``lua``: a
    Lua script Orthanc runs (``LuaScripts``)."""

    def __init__(self, folder: Path, tls: dict[str, Path] | None = None, *, lua: Path | None = None,
                 config: dict | None = None) -> None:
        self.folder, self.tls, self.lua, self.extra = folder, tls, lua, config or {}
        self.http_port, self.dicom_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        binary = require_tool("Orthanc")
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "test-pacs", "DicomAet": PACS_AET,
            "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
            "Plugins": [], "SaveJobs": False,
        }
        if self.tls:  # DICOM over TLS only, and only from peers with a certificate of the test CA
            config.update({"DicomTlsEnabled": True, "DicomTlsCertificate": str(self.tls["cert"]),
                           "DicomTlsPrivateKey": str(self.tls["key"]), "DicomTlsTrustedCertificates": str(self.tls["ca"]),
                           "DicomTlsRemoteCertificateRequired": True})
        config.update(self.extra)
        if self.lua is not None:
            config["LuaScripts"] = [str(self.lua)]
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._answers, 30, "Orthanc's REST API")
        return self

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, \
            f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}"
        try:
            return "Version" in http_json(f"{self.url}/system", timeout=2)
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def instances(self) -> list[str]:
        return http_json(f"{self.url}/instances")

    def tags(self, instance: str) -> dict:
        return http_json(f"{self.url}/instances/{instance}/simplified-tags")


class Node:
    """``xraydenoise serve`` in a subprocess, its log in a file, its status over HTTP."""

    def __init__(self, folder: Path, forward_port: int, *args: str, allow: str = MODALITY_AET,
                 pacs_aet: str = PACS_AET) -> None:
        self.folder, self.queue = folder, folder / "queue"
        self.port, self.status_port = free_port(), free_port()
        self.argv = [sys.executable, "-m", "xraydenoise.cli", "serve", "--aet", NODE_AET, "--host", "127.0.0.1",
                     "--port", str(self.port), "--forward", f"{pacs_aet}@127.0.0.1:{forward_port}",
                     "--queue", str(self.queue), "--allow", allow, "--status-port", str(self.status_port), *args]
        self.log_path = folder / "node.log"
        self.log_offset = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> Node:
        """Start (or, after a kill, restart) the node on the same ports and queue; :meth:`log`
        then reads this run's lines only."""
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        wait_for(self._ready, 120, "the node to listen")
        return self

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"the node exited:\n{self.log()}"
        return "listening as" in self.log() and self.status() is not None

    def status(self) -> dict | None:
        try:
            return http_json(f"http://127.0.0.1:{self.status_port}/status", timeout=2)
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(self.log_offset)
            return fh.read().decode(errors="replace")

    def lines(self, word: str) -> list[str]:
        return [line for line in self.log().splitlines() if f" {word} " in line]

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        code, self.process = self.process.returncode, None
        return code


def dcmtk(tool: str, port: int, *files, aet: str = MODALITY_AET, called: str = NODE_AET, options=(), timeout: float = 180):
    argv = [require_tool(tool), "-aet", aet, "-aec", called, "-to", "20", *map(str, options), "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def send(node: Node, files: list[Path], aet: str = MODALITY_AET, options=()) -> None:
    result = dcmtk("storescu", node.port, *files, aet=aet, options=options)
    assert result.returncode == 0, result.stdout + result.stderr


def make_certificates(folder: Path) -> dict[str, Path]:
    """A test CA, a certificate it signs for 127.0.0.1, and a self-signed "rogue" one (openssl)."""
    openssl = require_tool("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem",
         "-days", "2", "-extfile", "san.ext"],
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=rogue"],
    ]
    for step in steps:
        result = subprocess.run([openssl, *step], cwd=folder, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    names = {"ca": "ca.pem", "key": "node.key", "cert": "node.pem", "rogue_key": "rogue.key", "rogue_cert": "rogue.pem"}
    return {role: folder / name for role, name in names.items()}


# --------------------------------------------------------------------------- radiographs


def _greys(count: int) -> list[np.ndarray]:
    """``count`` different 256x256 8-bit crops of real radiographs: the development set's
    chest films when present, else the radiographs bundled with the package."""
    folder = data_dir() / "nih"
    paths = sorted(folder.glob("*.png"))[:count] if folder.is_dir() else []
    if len(paths) < count:
        paths = sorted(SAMPLES.glob("*.png"))
    crops = []
    for i in range(count):
        grey = np.asarray(PIL.Image.open(paths[i % len(paths)]).convert("L"))
        top = (grey.shape[0] - 256) // 2 + 16 * (i // len(paths))
        left = (grey.shape[1] - 256) // 2
        crops.append(np.ascontiguousarray(grey[top:top + 256, left:left + 256]))
    return crops


def write_radiographs(folder: Path, count: int) -> list[Path]:
    """``count`` 12-bit radiographs from two patients, two studies each, each study one series;
    DX for presentation, DX for processing and CR, as modalities send them."""
    folder.mkdir(parents=True, exist_ok=True)
    studies = [(f"SERVE-{p}", f"Serve^Patient{p}", generate_uid(), generate_uid()) for p in (1, 2) for _ in (1, 2)]
    paths = []
    for i, grey in enumerate(_greys(count)):
        patient_id, name, study, series = studies[i % len(studies)]
        ds = dx12_dataset((grey.astype(np.uint16) << 4) | (grey >> 4))
        ds.PatientID, ds.PatientName, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient_id, name, study, series
        ds.InstanceNumber = i + 1
        if i % 3 == 1:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PROCESSING
            ds.PresentationIntentType = "FOR PROCESSING"
        elif i % 3 == 2:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
            ds.Modality = "CR"
        path = folder / f"img{i:02d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory) -> list[Path]:
    return write_radiographs(tmp_path_factory.mktemp("modality"), 20)


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "pacs").start()
    yield server
    server.stop()


@pytest.fixture
def nodes():
    """Nodes a test starts; stopped (SIGTERM, then SIGKILL) when it ends."""
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def check_derived(orthanc: Orthanc, sources: list[Path]) -> list[dict]:
    """Every instance in Orthanc is DERIVED, of a sent radiograph, with its patient and study
    and in a series of its own; one per source. Returns their tags."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in sources)}
    source_series = {str(ds.SeriesInstanceUID) for ds in by_uid.values()}
    tags = [orthanc.tags(instance) for instance in orthanc.instances()]
    referenced = []
    for tag in tags:
        assert tag["ImageType"].split("\\")[0] == "DERIVED", tag["ImageType"]
        source = by_uid[tag["SourceImageSequence"][0]["ReferencedSOPInstanceUID"]]
        referenced.append(str(source.SOPInstanceUID))
        assert tag["PatientID"] == source.PatientID and tag["StudyInstanceUID"] == source.StudyInstanceUID
        assert tag["SeriesInstanceUID"] not in source_series and tag["SOPInstanceUID"] not in by_uid
        assert tag["SOPClassUID"] == source.SOPClassUID
    assert sorted(referenced) == sorted(by_uid)  # each source once: nothing lost, nothing doubled
    return tags


# --------------------------------------------------------------------------- tests


def test_twenty_radiographs_become_twenty_derived_instances_in_orthanc(radiographs, orthanc, nodes, tmp_path):
    before = digest(radiographs)
    node = Node(tmp_path, orthanc.dicom_port, *FAST).start()
    nodes.append(node)
    echo = dcmtk("echoscu", node.port)
    assert echo.returncode == 0, echo.stderr

    send(node, radiographs)
    wait_for(lambda: len(orthanc.instances()) >= 20 and node.status()["queued"] == 0, 120, "20 instances in Orthanc")
    tags = check_derived(orthanc, radiographs)
    assert len(tags) == 20
    assert len({t["SeriesInstanceUID"] for t in tags}) == 4  # the four source series, each a new one
    assert all("gaussian" in t["SeriesDescription"] for t in tags)
    assert node.status() | {"uptime_s": 0} == {"queued": 0, "done": 20, "failed": 0, "incoming": 0, "processing": 0,
                                               "outgoing": 0, "aet": NODE_AET, "method": "gaussian", "uptime_s": 0,
                                               "destination": f"{PACS_AET}@127.0.0.1:{orthanc.dicom_port}"}
    sent = node.lines("sent")
    assert len(sent) == 20 and len({line.split()[4] for line in sent}) == 20, node.log()

    # The same 20 sent again: the same derived UIDs, so Orthanc still holds 20.
    send(node, radiographs)
    wait_for(lambda: len(node.lines("sent")) == 40, 120, "the resent instances to be forwarded")
    assert len(orthanc.instances()) == 20
    assert node.stop() == 0
    assert "Traceback" not in node.log() and not node.lines("ERROR"), node.log()
    assert digest(radiographs) == before  # the modality's files are untouched

    # The counts also come from the folders when no node runs.
    result = subprocess.run([sys.executable, "-m", "xraydenoise.cli", "serve", "--queue", str(node.queue), "--status"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"queued": 0, "done": 20, "failed": 0, "incoming": 0, "processing": 0, "outgoing": 0}


def test_an_ae_title_not_allowed_is_refused(radiographs, nodes, tmp_path):
    node = Node(tmp_path, free_port(), *FAST, allow=f"{MODALITY_AET},CT01").start()
    nodes.append(node)
    assert dcmtk("echoscu", node.port, aet="CT01").returncode == 0
    assert dcmtk("echoscu", node.port, aet="STRANGER").returncode != 0
    refused = dcmtk("storescu", node.port, *radiographs[:2], aet="STRANGER")
    assert refused.returncode != 0
    wrong_called = dcmtk("storescu", node.port, *radiographs[:2], called="SOMEONE")
    assert wrong_called.returncode != 0
    assert node.status()["queued"] == 0 and not list((node.queue / "incoming").iterdir())
    assert any("STRANGER" in line for line in node.lines("WARNING")), node.log()


def test_an_instance_that_cannot_be_denoised_goes_to_dead_with_its_reason(radiographs, nodes, tmp_path):
    bad = tmp_path / "bad.dcm"
    ds = pydicom.dcmread(radiographs[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.HighBit = 15  # data shifted in its cell: the reader refuses it
    ds.save_as(bad, enforce_file_format=True)
    node = Node(tmp_path, free_port(), *FAST).start()
    nodes.append(node)
    send(node, [bad])
    wait_for(lambda: node.status()["failed"] == 1, 60, "the instance to be dead-lettered")
    dead = node.queue / "dead" / f"{ds.SOPInstanceUID}.dcm"
    assert pydicom.dcmread(dead) == pydicom.dcmread(bad)  # kept as received, for a person to look at
    reason = Path(f"{dead}.reason").read_text()
    assert "HighBit=15" in reason and str(tmp_path) not in reason
    failed = node.lines("ERROR")
    assert len(failed) == 1 and str(ds.SOPInstanceUID) in failed[0] and "HighBit" in failed[0], node.log()


@pytest.mark.slow
def test_kill_9_at_three_moments_then_restart_delivers_everything_once(radiographs, orthanc, nodes, tmp_path):
    from xraydenoise.serve.queue import count_states

    before = digest(radiographs)
    # NLM is slow enough here that each kill lands with instances in several states.
    node = Node(tmp_path, orthanc.dicom_port, "--method", "nlm", "--sigma", "5").start()
    nodes.append(node)
    send(node, radiographs)
    requeued = 0
    for reached in (3, 8, 13):
        wait_for(lambda: node.status()["done"] >= reached, 120, f"{reached} instances in Orthanc")
        node.kill9()
        at_kill = count_states(node.queue).as_dict()
        assert at_kill["queued"] > 0, at_kill  # otherwise the kill tested nothing
        node.start()
        requeued += "queued again" in node.log()
    wait_for(lambda: node.status()["done"] == 20, 240, "all 20 instances after the restarts")
    assert node.status()["failed"] == 0 and not list((node.queue / "processing").iterdir())
    assert requeued >= 1  # at least one kill interrupted a denoise, which was redone
    check_derived(orthanc, radiographs)
    assert len(orthanc.instances()) == 20
    assert digest(radiographs) == before


@pytest.mark.slow
def test_destination_down_for_30_seconds_then_everything_arrives(radiographs, nodes, tmp_path):
    pacs = Orthanc(tmp_path / "pacs")  # ports chosen, not started: the destination is down
    node = Node(tmp_path, pacs.dicom_port, *FAST, "--retry-max-wait", "4").start()
    nodes.append(node)
    send(node, radiographs)
    wait_for(lambda: node.status()["outgoing"] == 20, 60, "20 derived instances waiting to be sent")
    time.sleep(30)
    status = node.status()
    assert status["outgoing"] == 20 and status["done"] == 0 and status["failed"] == 0, status
    assert len(node.lines("WARNING")) >= 3, node.log()  # it kept trying, and said so
    try:
        pacs.start()
        wait_for(lambda: node.status()["done"] == 20, 60, "all 20 instances once Orthanc is back")
        check_derived(pacs, radiographs)
        assert "reachable again" in node.log()
    finally:
        pacs.stop()


def test_the_default_network_denoises_what_it_forwards(radiographs, orthanc, nodes, tmp_path):
    node = Node(tmp_path, orthanc.dicom_port).start()
    nodes.append(node)
    send(node, radiographs[:3])
    wait_for(lambda: node.status()["done"] == 3, 180, "3 instances denoised by the network")
    tags = check_derived(orthanc, radiographs[:3])
    assert all("network" in t["SeriesDescription"] for t in tags)
    # The pixels changed, but stayed the same radiograph.
    instance = orthanc.instances()[0]
    with urllib.request.urlopen(f"{orthanc.url}/instances/{instance}/file", timeout=10) as response:
        derived = pydicom.dcmread(io.BytesIO(response.read()))
    source = pydicom.dcmread(next(p for p in radiographs[:3]
                                  if pydicom.dcmread(p).SOPInstanceUID == derived.SourceImageSequence[0].ReferencedSOPInstanceUID))
    a, b = source.pixel_array.astype(float), derived.pixel_array.astype(float)
    assert 0 < np.abs(a - b).mean() < 0.05 * 4095


def test_an_instance_the_destination_refuses_goes_to_dead_after_five_answers(radiographs, nodes, tmp_path):
    # dcmtk's storescp answers "Refused: Out of Resources" (0xA700) when it cannot write a
    # file: its output folder is removed once it listens.
    out = tmp_path / "scp-out"
    out.mkdir()
    port = free_port()
    scp = subprocess.Popen([require_tool("storescp"), "-od", str(out), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: dcmtk("echoscu", port, called="ANY").returncode == 0, 30, "storescp to listen")
        out.rmdir()
        node = Node(tmp_path, port, *FAST, "--retry-max-wait", "1").start()
        nodes.append(node)
        send(node, radiographs[:2])
        wait_for(lambda: node.status()["failed"] == 2, 60, "both instances to be dead-lettered")
    finally:
        scp.kill()
        scp.wait(timeout=10)
    assert node.status()["done"] == 0 and node.status()["queued"] == 0
    for path in radiographs[:2]:
        name = f"{pydicom.dcmread(path).SOPInstanceUID}.dcm"
        reason = (node.queue / "dead" / f"{name}.reason").read_text()
        assert "status 0xA700" in reason and "(5 times)" in reason, reason
        assert pydicom.dcmread(node.queue / "dead" / name).ImageType[0] == "DERIVED"  # the derived one, ready to resend
    assert len(node.lines("WARNING")) == 8 and len(node.lines("ERROR")) == 2, node.log()  # 4 retries each, then one line


def test_compressed_radiographs_arrive_in_their_own_transfer_syntax(radiographs, orthanc, nodes, tmp_path):
    # RLE and JPEG-LS lossless written by dcmtk, as a modality or a PACS would send them.
    compressed = []
    for tool, name in (("dcmcrle", "rle.dcm"), ("dcmcjpls", "jpegls.dcm")):
        out = tmp_path / name
        result = subprocess.run([require_tool(tool), str(radiographs[0 if tool == "dcmcrle" else 1]), str(out)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        compressed.append(out)
    node = Node(tmp_path, orthanc.dicom_port, *FAST).start()
    nodes.append(node)
    # storescu proposes only uncompressed syntaxes unless told; a modality proposes its own.
    send(node, compressed[:1], options=("-R", "-xr"))
    send(node, compressed[1:], options=("-R", "-xt"))
    wait_for(lambda: node.status()["done"] == 2, 60, "2 compressed instances in Orthanc")
    check_derived(orthanc, compressed)
    syntaxes = {orthanc.tags(i)["SourceImageSequence"][0]["ReferencedSOPInstanceUID"]:
                urllib.request.urlopen(f"{orthanc.url}/instances/{i}/metadata/TransferSyntax", timeout=5).read().decode()
                for i in orthanc.instances()}
    expected = {str(ds.SOPInstanceUID): str(ds.file_meta.TransferSyntaxUID) for ds in map(pydicom.dcmread, compressed)}
    assert syntaxes == expected  # lossless in, the same lossless syntax out, end to end


def test_tls_from_the_modality_and_to_the_pacs(radiographs, nodes, tmp_path):
    certs = make_certificates(tmp_path / "certs")
    pacs = Orthanc(tmp_path / "pacs", tls=certs).start()
    try:
        node = Node(tmp_path, pacs.dicom_port, *FAST, "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
                    "--tls-ca", str(certs["ca"]), "--forward-tls").start()
        nodes.append(node)
        assert "over TLS" in node.log()
        assert dcmtk("echoscu", node.port).returncode != 0  # plain TCP is not served
        rogue = ("+tls", certs["rogue_key"], certs["rogue_cert"], "+cf", certs["ca"])
        assert dcmtk("echoscu", node.port, options=rogue).returncode != 0  # nor a certificate from another CA
        send(node, radiographs[:3], options=("+tls", certs["key"], certs["cert"], "+cf", certs["ca"]))
        wait_for(lambda: node.status()["done"] == 3, 60, "3 instances in Orthanc over TLS")
        check_derived(pacs, radiographs[:3])
        assert node.status()["queued"] == 0 and not list((node.queue / "incoming").iterdir())
    finally:
        pacs.stop()


# --------------------------------------------------------------------------- Orthanc routing


ROUTING_LUA = ROOT / "docs" / "orthanc-route-to-xraydenoise.lua"
ROUTED_LINE = "xraydenoise routing: sending"  # what the script prints for each instance it routes


def documented_orthanc_config() -> dict:
    """The ``orthanc.json`` excerpt of docs/serve.md ("Routing from a modality or a PACS")."""
    text = (ROOT / "docs" / "serve.md").read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```json\n")[1:]]
    configs = [json.loads(block) for block in blocks if "DicomModalities" in block]
    assert len(configs) == 1, "docs/serve.md must hold one orthanc.json block with DicomModalities"
    return configs[0]


def derived_file_from_elsewhere(source: Path, target: Path) -> Path:
    """A denoised instance under a new UID, as another system (a second PACS, an import) would
    send it: it carries the node's marks but does not come from the node."""
    from xraydenoise.io import load_image, save_image

    save_image(target, load_image(source), method="gaussian")
    ds = pydicom.dcmread(target)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(target, enforce_file_format=True)
    return target


def test_orthanc_routes_radiographs_through_the_node_with_the_documented_lua_and_nothing_loops(radiographs, nodes, tmp_path):
    config = documented_orthanc_config()
    modalities = config["DicomModalities"]
    node_entry = next(entry for entry in modalities.values() if entry["AET"] == NODE_AET)
    modality_aet = next(entry["AET"] for entry in modalities.values() if entry["AET"] != NODE_AET)
    pacs_aet = config["DicomAet"]

    pacs = Orthanc(tmp_path / "pacs", lua=ROUTING_LUA)
    node = Node(tmp_path, pacs.dicom_port, *FAST, allow=pacs_aet, pacs_aet=pacs_aet)
    for entry in modalities.values():
        entry["Host"] = "127.0.0.1"
    node_entry["Port"] = node.port
    pacs.extra = {**config, "DicomPort": pacs.dicom_port}
    pacs.start()
    try:
        nodes.append(node.start())
        sources = radiographs[:6]  # DX for presentation, DX for processing and CR, twice each
        result = dcmtk("storescu", pacs.dicom_port, *sources, aet=modality_aet, called=pacs_aet)
        assert result.returncode == 0, result.stdout + result.stderr

        wait_for(lambda: len(pacs.instances()) >= 12 and node.status()["done"] >= 6, 120,
                 "6 originals and their 6 derived instances in Orthanc")
        wait_for(lambda: node.status()["queued"] == 0, 30, "the node's queue to empty")
        # Stable: nothing goes round again once the queue is empty.
        time.sleep(5)
        assert len(pacs.instances()) == 12
        status = node.status()
        assert (status["done"], status["queued"], status["failed"]) == (6, 0, 0), status

        tags = [pacs.tags(instance) for instance in pacs.instances()]
        originals = [t for t in tags if t["ImageType"].startswith("ORIGINAL")]
        derived = [t for t in tags if t["ImageType"].startswith("DERIVED")]
        by_uid = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, sources)}
        assert sorted(t["SOPInstanceUID"] for t in originals) == sorted(by_uid)
        assert sorted(t["SourceImageSequence"][0]["ReferencedSOPInstanceUID"] for t in derived) == sorted(by_uid)
        for tag in derived:
            source = by_uid[tag["SourceImageSequence"][0]["ReferencedSOPInstanceUID"]]
            assert tag["DerivationDescription"] == "Denoised with xraydenoise gaussian"
            assert tag["StudyInstanceUID"] == source.StudyInstanceUID and tag["SOPClassUID"] == source.SOPClassUID
        def orthanc_log() -> str:
            return (pacs.folder / "orthanc.log").read_text(errors="replace")

        assert orthanc_log().count(ROUTED_LINE) == 6, orthanc_log()[-3000:]  # the originals, each once

        # A denoised instance that reaches Orthanc another way is not routed either.
        elsewhere = derived_file_from_elsewhere(sources[0], tmp_path / "elsewhere.dcm")
        result = dcmtk("storescu", pacs.dicom_port, elsewhere, aet=modality_aet, called=pacs_aet)
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: len(pacs.instances()) == 13, 30, "the imported denoised instance in Orthanc")
        time.sleep(3)
        assert orthanc_log().count(ROUTED_LINE) == 6 and len(pacs.instances()) == 13
        assert node.status()["done"] == 6 and not list((node.queue / "incoming").iterdir())
        assert "Traceback" not in node.log() and not node.lines("ERROR"), node.log()
    finally:
        pacs.stop()


def test_the_readme_shows_the_documented_orthanc_configuration():
    readme = (ROOT / "README.md").read_text()
    blocks = [json.loads(block.split("```", 1)[0]) for block in readme.split("```json\n")[1:]
              if "DicomModalities" in block.split("```", 1)[0]]
    assert blocks == [documented_orthanc_config()]
    assert "docs/orthanc-route-to-xraydenoise.lua" in readme


# --------------------------------------------------------------------------- what is denoised


def test_a_grey_secondary_capture_is_accepted_and_denoised(orthanc, nodes, tmp_path):
    # dcmtk's img2dcm makes an 8-bit greyscale Secondary Capture from a crop of a real chest film,
    # the way a film digitiser or a screen capture arrives.
    from tests.dicom_corpus import run_tool

    bmp = tmp_path / "chest.bmp"
    grey = _greys(1)[0]
    noisy = np.clip(grey + np.random.default_rng(0).normal(0, 8, grey.shape), 0, 255).astype(np.uint8)
    PIL.Image.fromarray(noisy).save(bmp)
    sc = run_tool(["img2dcm", "-i", "BMP", "{bmp}", "{out}"], tmp_path / "sc.dcm", {"bmp": bmp})
    source = pydicom.dcmread(sc)
    assert source.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and source.PhotometricInterpretation == "MONOCHROME2"

    node = Node(tmp_path, orthanc.dicom_port, *FAST).start()
    nodes.append(node)
    send(node, [sc])
    wait_for(lambda: node.status()["done"] == 1, 60, "the derived Secondary Capture in Orthanc")
    (tag,) = check_derived(orthanc, [sc])
    assert tag["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7"
    with urllib.request.urlopen(f"{orthanc.url}/instances/{orthanc.instances()[0]}/file", timeout=10) as response:
        derived = pydicom.dcmread(io.BytesIO(response.read()))
    before, after = source.pixel_array.astype(float), derived.pixel_array.astype(float)
    assert after.shape == before.shape and derived.BitsStored == source.BitsStored
    assert 0 < np.abs(after - before).mean() < 10  # denoised, still the same film
    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, axis=1)).mean())

    assert roughness(after) < 0.8 * roughness(before)


def test_the_node_writes_the_same_pixels_as_denoise_on_the_same_file(radiographs, orthanc, nodes, tmp_path, cli):
    # The default method, the shipped network: the node claims to run the batch's own code.
    sources = radiographs[:3]  # DX for presentation, DX for processing, CR
    node = Node(tmp_path, orthanc.dicom_port).start()
    nodes.append(node)
    send(node, sources)
    batch = cli("denoise", *sources, "-o", tmp_path / "batch")
    assert batch.returncode == 0, batch.stderr
    wait_for(lambda: node.status()["done"] == 3, 180, "3 instances denoised by the network")
    check_derived(orthanc, sources)
    in_orthanc = {}
    for instance in orthanc.instances():
        with urllib.request.urlopen(f"{orthanc.url}/instances/{instance}/file", timeout=10) as response:
            ds = pydicom.dcmread(io.BytesIO(response.read()))
        in_orthanc[str(ds.SOPInstanceUID)] = ds
    for path in sources:
        received = pydicom.dcmread(path)
        written = pydicom.dcmread(tmp_path / "batch" / path.name)
        from_node = node.queue / "done" / f"{received.SOPInstanceUID}.dcm"
        assert pydicom.dcmread(from_node).PixelData == written.PixelData, path.name
        # Not only the pixels: the whole file, header and UIDs included, is the same object.
        assert from_node.read_bytes() == (tmp_path / "batch" / path.name).read_bytes(), path.name
        assert written.PixelData != received.PixelData  # it did denoise
        delivered = in_orthanc[str(written.SOPInstanceUID)]  # the same derived UID from both
        assert delivered.PixelData == written.PixelData, path.name
        assert delivered.SeriesInstanceUID == written.SeriesInstanceUID


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, expected", [
    (["--forward", "PACS-127.0.0.1-4242"], "--forward must be AET@HOST:PORT"),
    (["--forward", "PACS@127.0.0.1:70000"], "the port in --forward must be a TCP port"),
    (["--forward", f"{NODE_AET}@127.0.0.1:4242"], "this node's own AE title"),
    (["--aet", "A_TITLE_FAR_TOO_LONG"], "--aet must be an AE title"),
    (["--allow", "OK,BAD\\NAME"], "each AE title in --allow"),
    (["--method", "nosuchfilter"], "nosuchfilter"),
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
])
def test_bad_options_fail_in_one_line(args, expected, tmp_path, cli):
    options = {"--aet": NODE_AET, "--port": str(free_port()), "--forward": "PACS@127.0.0.1:4242",
               "--queue": str(tmp_path / "queue"), "--host": "127.0.0.1", "--method": "gaussian"}
    options.update(zip(args[::2], args[1::2]))
    result = cli("serve", *[word for pair in options.items() for word in pair])
    assert result.returncode == 2, result.stderr
    assert len(result.error_lines) == 1 and expected in result.error_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_without_pynetdicom_the_node_names_the_extra(tmp_path):
    hide = ("import sys; sys.modules['pynetdicom'] = None; sys.argv[0] = 'xraydenoise'; "
            "from xraydenoise.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", hide, "serve", "--aet", NODE_AET, "--port", str(free_port()),
                             "--forward", "PACS@127.0.0.1:4242", "--queue", str(tmp_path / "q")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == \
        "error: the DICOM node needs pynetdicom: pip install 'xraydenoise[serve]'", result.stderr
    assert not (tmp_path / "q").exists()  # refused before anything was created


def test_a_port_in_use_an_unusable_queue_and_a_shared_queue_fail_in_one_line(tmp_path, cli, nodes):
    common = ["--aet", NODE_AET, "--host", "127.0.0.1", "--forward", "PACS@127.0.0.1:4242", *FAST]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = cli("serve", *common, "--port", busy.getsockname()[1], "--queue", tmp_path / "q1")
    assert result.returncode == 2 and "the port is in use" in result.error_lines[0], result.stderr

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("serve", *common, "--port", free_port(), "--queue", blocker / "queue")
    assert result.returncode == 2 and "is not writable" in result.error_lines[0], result.stderr

    node = Node(tmp_path, free_port(), *FAST).start()
    nodes.append(node)
    result = cli("serve", *common, "--port", free_port(), "--queue", node.queue)
    assert result.returncode == 2 and "in use by another xraydenoise serve" in result.error_lines[0], result.stderr
    assert node.status() is not None  # the running node is unharmed
