#!/usr/bin/env bash
# Builds csvmm's test initramfs: a newc cpio of busybox-static, a link per applet, /init (tests/guest/init) and
# /dev/console, written by the kernel's own usr/gen_init_cpio (so no root and no fakeroot are needed, and every entry
# is owned by 0:0). Cached in $CSVMM_CACHE/initramfs-<key>/ as initramfs.cpio (uncompressed) and initramfs.cpio.gz
# (the same archive, gzip'd). Prints the path of initramfs.cpio as its last stdout line: on this project's hosts the
# guest kernel needs ~45 s to gunzip the 1 MB .gz (CPL0 code runs in KVM's emulator), so tests load the plain archive.
# Idempotent; concurrent callers build once. CSVMM_GUEST_REBUILD=1 forces a rebuild.
#
# Debian packages (build.sh installs them): busybox-static, linux-source-6.1 (gen_init_cpio.c), gcc, xz-utils, gzip.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=rootfs.sh
source "$here/rootfs.sh"

GUEST_NAME=initramfs
busybox=$(guest_busybox)
tarball=$(guest_linux_tarball)
recipe=$(
  guest_recipe_file "$here/build-initramfs.sh"
  guest_recipe_file "$here/lib.sh"
  guest_recipe_file "$here/rootfs.sh"
  guest_recipe_file "$here/init"
  guest_recipe_package busybox-static
  guest_recipe_package "linux-source-$GUEST_LINUX_SERIES"
)
guest_begin initramfs "$recipe" initramfs.cpio

# gen_init_cpio is one self-contained C file in the kernel tree; take it from the same source package as the kernel.
gen=$GUEST_WORK/gen_init_cpio
if [[ ! -x $gen ]]; then
  member=linux-source-$GUEST_LINUX_SERIES/usr/gen_init_cpio.c
  tar -C "$GUEST_WORK" -xJf "$tarball" "$member"
  gcc -O2 -o "$gen.tmp" "$GUEST_WORK/$member"
  mv "$gen.tmp" "$gen"
fi

guest_rootfs_list "$busybox" >"$GUEST_TMP/initramfs.list"
# Directories, links and nodes get the busybox binary's mtime (fixed by its Debian package); files keep their own.
mtime=$(stat -c %Y "$busybox")
"$gen" -t "$mtime" "$GUEST_TMP/initramfs.list" >"$GUEST_TMP/initramfs.cpio"
gzip -n -9 -k "$GUEST_TMP/initramfs.cpio"

# Check the archive: it must list /init, the shell and the console node.
listing=$(cpio -t --quiet <"$GUEST_TMP/initramfs.cpio" 2>/dev/null)
for want in init bin/sh bin/busybox sbin/poweroff dev/console; do
  grep -qxF "$want" <<<"$listing" || guest_die "initramfs lacks $want"
done
guest_log "$(wc -l <<<"$listing") entries, $(stat -c %s "$GUEST_TMP/initramfs.cpio") bytes ($(stat -c %s "$GUEST_TMP/initramfs.cpio.gz") gzip'd)"
guest_done
