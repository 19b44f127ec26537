#!/usr/bin/env bash
# Installs what hsm-ca needs to run on a fresh Debian machine with Node 20+:
# the npm packages, and SoftHSM2 (+ OpenSC's pkcs11-tool) from Debian.
# Sourced by scripts/start and scripts/test; with HSM_CA_TEST_DEPS=1 (scripts/test)
# also the real ACME clients and DNS server the tests drive: certbot, lego, pebble,
# the browser the dashboard test drives: chromium, and the relying parties that
# verify chains: Go (golang-go, golang-golang-x-crypto-dev), GnuTLS (gnutls-bin), NSS (libnss3-tools),
# the Vault client the Vault-compatible API's tests drive: python3-hvac, and the PKCS#11
# modules scripts/dev-token sets up (opencryptoki, tpm2-pkcs11 with swtpm and tpm2-abrmd).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  echo "hsm-ca needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

softhsm_lib=/usr/lib/softhsm/libsofthsm2.so
missing=()
[ -e "$softhsm_lib" ] || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${HSM_CA_TEST_DEPS:-0}" = 1 ]; then
  command -v certbot >/dev/null 2>&1 || missing+=(certbot)
  command -v lego >/dev/null 2>&1 || missing+=(lego)
  command -v pebble-challtestsrv >/dev/null 2>&1 || missing+=(pebble)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # Independent relying parties that verify what hsm-ca issues: Go's crypto/x509 (and
  # golang.org/x/crypto/ocsp from Debian), GnuTLS certtool/ocsptool, NSS certutil/crlutil.
  command -v go >/dev/null 2>&1 || missing+=(golang-go)
  [ -d /usr/share/gocode/src/golang.org/x/crypto/ocsp ] || missing+=(golang-golang-x-crypto-dev)
  command -v certtool >/dev/null 2>&1 || missing+=(gnutls-bin)
  command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
  # The Vault client the Vault-compatible API's tests drive, for Debian's python3.
  /usr/bin/python3 -c 'import hvac' >/dev/null 2>&1 || missing+=(python3-hvac)
  # Two more PKCS#11 modules for test/pkcs11-modules.test.ts (scripts/dev-token): opencryptoki's
  # soft token, and tpm2-pkcs11 on a software TPM behind tpm2-abrmd.
  [ -x /usr/sbin/pkcsslotd ] || missing+=(opencryptoki)
  [ -e /usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so ] || missing+=(libtpm2-pkcs11-1)
  command -v tpm2_ptool >/dev/null 2>&1 || missing+=(libtpm2-pkcs11-tools)
  command -v swtpm >/dev/null 2>&1 || missing+=(swtpm swtpm-tools)
  command -v tpm2_getrandom >/dev/null 2>&1 || missing+=(tpm2-tools)
  command -v tpm2-abrmd >/dev/null 2>&1 || missing+=(tpm2-abrmd libtss2-tcti-tabrmd0)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing from Debian: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "hsm-ca needs these Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# npm ci when node_modules is missing or older than the lock file. Never through a symlinked
# node_modules (a git worktree sharing another checkout's): npm ci empties the directory it
# points at, under every other checkout that uses it.
if [ -L node_modules ]; then
  if [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "node_modules is a symlink ($(readlink node_modules)): not running npm ci through it" >&2
  fi
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "Installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
