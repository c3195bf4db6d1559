"""The node's Storage SCP: C-ECHO, and C-STORE of radiographs into the durable queue.

Only the storage classes a radiograph comes in are accepted (CR, DX for presentation and for
processing, and the greyscale secondary captures), so anything else (CT, a structured report)
is refused at association time, where the sender sees it, rather than accepted and
dead-lettered later. Transfer syntaxes: the uncompressed ones always, compressed ones when
pydicom can decode them here, so every accepted instance can be denoised.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from xraydenoise.errors import XRayDenoiseError
from xraydenoise.io._messages import one_line

from .queue import DurableQueue

log = logging.getLogger("xraydenoise.serve")

#: SOP classes a radiograph is stored as; names as in the DICOM standard, Part 4 Annex B.
RADIOGRAPHY_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
}
VERIFICATION = "1.2.840.10008.1.1"

#: C-STORE statuses (Part 7 Annex C.4.1 and Part 4 Annex B.2.3).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


def accepted_transfer_syntaxes() -> list[str]:
    """Transfer syntaxes this node can decode, in the order it prefers them.

    pynetdicom accepts the first syntax of this list that the sender proposes, whatever the
    sender's own order. Lossless compressed syntaxes come first: a sender proposes one when
    its data is stored that way, and taking it as is spares the sender a conversion it may
    not be able to do (dcmtk's storescu cannot decode RLE). Uncompressed comes next, lossy
    last: a sender holding uncompressed data that offers to compress it lossily must not be
    taken up on the offer before a radiograph is denoised.
    """
    from pydicom.uid import (
        UID,
        AllTransferSyntaxes,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        RLELossless,
    )

    uncompressed = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
    try:
        from pydicom.pixels import get_decoder
        from pydicom.uid import HTJ2KLossless, HTJ2KLosslessRPCL
    except ImportError:  # pydicom 2: only the uncompressed syntaxes are known to decode
        return [str(uid) for uid in uncompressed]

    def decodable(uid: UID) -> bool:
        try:
            return get_decoder(uid).is_available
        except (NotImplementedError, ValueError):  # video, audio, referenced pixel data
            return False

    lossless_first = [RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1, JPEGLossless,
                      HTJ2KLossless, HTJ2KLosslessRPCL]
    lossless = [uid for uid in lossless_first if decodable(uid)]
    lossy = [uid for uid in AllTransferSyntaxes if uid.is_compressed and uid not in lossless and decodable(uid)]
    return [str(uid) for uid in lossless + uncompressed + lossy]


def build_server_ae(aet: str, allow: list[str] | None):
    """A pynetdicom AE that accepts Verification and the radiography storage classes.

    ``allow``: calling AE titles that may associate; None accepts any. Associations that
    call another AE title than ``aet`` are refused too, so a misrouted modality finds out.
    """
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.add_supported_context(VERIFICATION)
    syntaxes = accepted_transfer_syntaxes()
    for sop_class in RADIOGRAPHY_STORAGE:
        ae.add_supported_context(sop_class, syntaxes)
    if allow:
        ae.require_calling_aet = list(allow)
    ae.require_called_aet = True
    # A stalled peer must not hold a thread forever; a 4k x 4k 16-bit image is 32 MB.
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30, 60, 120
    ae.maximum_associations = 16
    return ae


def store_handler(queue: DurableQueue, on_stored: Callable[[], None]):
    """The EVT_C_STORE handler: write the instance to incoming/ (fsynced), then answer."""

    def handle_store(event) -> int:
        request = event.request
        uid = str(request.AffectedSOPInstanceUID or "")
        if not uid:
            return STATUS_CANNOT_UNDERSTAND
        try:
            # The encoded bytes as received, with a file meta header: nothing is decoded or
            # re-encoded on the network thread, and what is queued is what was sent.
            data = event.encoded_dataset(include_meta=True)
            queue.put(uid, data)
        except XRayDenoiseError as exc:  # disk full, folder gone: the sender keeps its copy
            log.error("refused %s from %s: cannot queue it: %s", uid, event.assoc.requestor.ae_title, exc)
            return STATUS_OUT_OF_RESOURCES
        except Exception as exc:  # noqa: BLE001 - an answer must go back whatever happened
            log.error("refused %s from %s: %s", uid, event.assoc.requestor.ae_title, one_line(exc))
            return STATUS_CANNOT_UNDERSTAND
        on_stored()
        return STATUS_SUCCESS

    return handle_store


def handle_echo(event) -> int:
    return STATUS_SUCCESS


def handle_rejected(event) -> None:
    log.warning("refused an association from %s (%s:%s): AE title not allowed or wrong called AE title",
                event.assoc.requestor.ae_title, event.assoc.requestor.address, event.assoc.requestor.port)


def start_scp(ae, host: str, port: int, queue: DurableQueue, on_stored: Callable[[], None],
              ssl_context: ssl.SSLContext | None = None):
    """Start listening in background threads; returns the server (``.shutdown()`` stops it).

    Raises
    ------
    OSError
        The address cannot be bound (port in use, no permission).
    """
    from pynetdicom import evt

    handlers = [
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, store_handler(queue, on_stored)),
        (evt.EVT_REJECTED, handle_rejected),
    ]
    return ae.start_server((host, port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
