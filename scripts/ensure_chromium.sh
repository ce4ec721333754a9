#!/usr/bin/env bash
# The report tests render the HTML report in headless Chromium and fail without it:
# install Debian's chromium when it is missing (non-interactively; as root, or with
# password-less sudo). SPMCLI_CHROMIUM=/path/to/chrome names another browser instead.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -n "${SPMCLI_CHROMIUM:-}" ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo -n"
fi
echo "Installing Debian's chromium for the report tests..."
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null >/dev/null
chromium --version
