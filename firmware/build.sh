#!/usr/bin/env bash
# Installs csvmm's built-in firmware beside the executable: out/firmware/bios.bin, what `csvmm --disk IMG` (no --kernel,
# no --firmware) boots. Today that is Debian's SeaBIOS (package seabios, /usr/share/seabios/bios-256k.bin), the BIOS
# QEMU's i440FX machine runs, configured by csvmm's fw_cfg as QEMU configures it. Copied, never committed; the
# version and SHA-256 go to out/firmware/SOURCE.
#   firmware/build.sh [OUTDIR]      OUTDIR defaults to <repo>/out/firmware
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/../out/firmware}
die() { echo "firmware/build.sh: $*" >&2; exit 1; }

src=/usr/share/seabios/bios-256k.bin
version=$(dpkg-query -W -f='${Version}' seabios 2>/dev/null) || die "Debian package seabios is not installed (apt-get install seabios)"
[[ -f $src ]] || die "$src is missing although seabios $version is installed"
size=$(stat -c %s "$src")
(( size % 65536 == 0 && size <= 16 * 1048576 )) || die "$src is $size bytes: not a BIOS image csvmm maps"
mkdir -p "$out"
tmp=$(mktemp "$out/.bios.XXXXXX")
cp "$src" "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$out/bios.bin"
printf 'seabios %s %s %s\n' "$version" "$src" "$(sha256sum <"$out/bios.bin" | cut -d' ' -f1)" >"$out/SOURCE"
echo "firmware/build.sh: $out/bios.bin (SeaBIOS $version)" >&2
