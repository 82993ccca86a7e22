#!/usr/bin/env bash
# Builds tests/qmp-client (go-qemu's qmp package from Debian, GOPATH mode, no network) and prints the binary's path.
# Cached in $CSVMM_CACHE/qmp-client-<key>/, keyed by main.go and the two packages' versions.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CSVMM_CACHE:-$HOME/.cache/csvmm}
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || { echo "tests/qmp-client: Debian package $1 is not installed" >&2; exit 1; }; }
key=$( { sha256sum <"$here/main.go"; ver golang-go; ver golang-github-digitalocean-go-qemu-dev; } | sha256sum | cut -c1-16)
out=$cache/qmp-client-$key
if [[ ! -x $out/qmp-client ]]; then
  mkdir -p "$out.tmp"
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$cache/go-build" GOFLAGS= \
    go build -o "$out.tmp/qmp-client" "$here/main.go" >&2
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
echo "$out/qmp-client"
