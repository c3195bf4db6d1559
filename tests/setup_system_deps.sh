#!/bin/sh
# System tools the DICOM conformance tests need: dciodvfy (dicom3tools) checks outputs
# against the standard, dcmtk's and gdcm's converters write the test corpus; chromium runs the
# viewer's page (driven by Playwright, whose own browser downloads are not used); Orthanc is the
# PACS of the DICOM node's tests (tests/e2e/test_serve.py). Installed only
# when missing; needs root (or run the apt-get line yourself).
set -e
if command -v dciodvfy >/dev/null 2>&1 && command -v img2dcm >/dev/null 2>&1 \
    && command -v gdcmconv >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 \
    && command -v Orthanc >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y dicom3tools dcmtk libgdcm-tools
$SUDO apt-get install -y --no-install-recommends orthanc  # the DICOM node's tests
$SUDO apt-get install -y chromium  # the viewer's page tests (tests/e2e/test_viewer.py)
