#!/usr/bin/env bash
# Installs, with apt-get, exactly the Debian 12 packages triage-node needs that are missing.
# Idempotent: a second run installs nothing. Uses sudo when not root.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake make pkg-config git ca-certificates
  # libraries
  libdcmtk-dev libdcmtk17 libtorch-dev libopenblas0-pthread libboost-dev libsqlite3-dev
  libfmt-dev libopenjp2-7-dev libgtest-dev libtomlplusplus-dev nlohmann-json3-dev libsystemd-dev
  libicu-dev  # Unicode classes and NFC for the BPE tokenizer
  libfreetype-dev fonts-dejavu-core  # text burned into the key images
  libpng-dev  # the worklist page's slice and key-image PNGs
  # test peers and tools
  dcmtk dicom3tools orthanc sqlite3 curl python3 python3-numpy python3-pydicom python3-torch
  systemd  # systemd-analyze verify of the unit
  chromium  # the worklist page's browser test drives Debian's Chromium headless (nothing downloads a browser)
  firefox-esr  # and the same test in Debian's Firefox ESR (WebDriver BiDi)
)
# Node.js and npm (test tools such as dcmjs) from Debian only when the machine has none: a
# machine that ships its own Node.js build cannot take Debian's npm beside it.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Orthanc's package starts a system service; tests start their own instances on free ports.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
  fi
fi

# Test tools from the npm registry, pinned by tests/js/package-lock.json: dcmjs (the library the
# OHIF viewer reads SEG with), @huggingface/tokenizers (the reference of the tokenizer parity
# test) and puppeteer-core (drives /usr/bin/chromium over the DevTools protocol; unlike `puppeteer`
# it downloads no browser). Only for tests; nothing at build or run time needs them.
JS="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
if [ ! -f "$JS/node_modules/dcmjs/package.json" ] || [ ! -f "$JS/node_modules/@huggingface/tokenizers/package.json" ] \
   || [ ! -f "$JS/node_modules/puppeteer-core/package.json" ]; then
  echo "install-deps: npm ci in tests/js (dcmjs, @huggingface/tokenizers, puppeteer-core)"
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "install-deps: done"
