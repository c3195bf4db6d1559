"""A DICOM node: receive radiographs by C-STORE, denoise them, send the derived series on.

``xraydenoise serve`` (:mod:`.command`) runs three parts that share one folder on disk:

* :mod:`.scp` answers C-ECHO and C-STORE for the radiography storage classes and writes each
  instance into the queue (fsync) before it answers success;
* :mod:`.worker` denoises queued instances with the same code and DICOM rules as
  ``xraydenoise denoise`` (:func:`xraydenoise.batch.process_one`);
* :mod:`.sender` sends the derived instances to the destination by C-STORE, retrying with
  back-off while it is down.

:mod:`.queue` is the folder itself (incoming/, processing/, outgoing/, done/, dead/): every
move is a rename, so a kill at any moment loses nothing, and derived UIDs are deterministic,
so what is redone after a kill replaces itself at the destination instead of doubling.
"""
