#!/usr/bin/env bash
# Set up a fresh Debian machine for diffdebias: Debian's Fashion-MNIST package (and, for the
# tests, chromium + chromium-driver) when apt is available, then a virtual environment in .venv with the package installed in editable mode.
#   bash scripts/setup.sh          # to run diffdebias
#   bash scripts/setup.sh --test   # also what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
apt_pkgs="dataset-fashion-mnist"
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  apt_pkgs="$apt_pkgs chromium chromium-driver"  # the HTML report is tested in headless Chromium
fi

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! dpkg -s $apt_pkgs >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $apt_pkgs >/dev/null
  fi
else
  echo "apt-get not found: get Fashion-MNIST's IDX files yourself and pass --root (see README)" >&2
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".${extras}"
echo "diffdebias is installed in .venv"
