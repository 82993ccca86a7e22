#!/usr/bin/env bash
# Builds csvmm's SYSLINUX test disk: a raw image with SYSLINUX's MBR (Debian's syslinux-common), one bootable FAT16
# partition holding SYSLINUX (Debian's syslinux: `syslinux --install` writes its boot sector and ldlinux.sys into the
# FAT image through mtools, no mount), syslinux.cfg, the test kernel (/bzImage) and the uncompressed initramfs
# (/initrd). Booted by firmware (SeaBIOS): MBR -> SYSLINUX (which leaves its 16-bit code with a 32-bit iretd, an
# instruction some emulating KVMs cannot run) -> "csvmm-syslinux: loading the kernel" -> the kernel -> "Run /init".
# Cached in $CSVMM_CACHE/syslinux-disk-<key>/; prints the path of its disk.img as its last stdout line.
#
# Debian packages: syslinux, syslinux-common, mtools, dosfstools, fdisk.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

GUEST_NAME=syslinux-disk
disk_mib=32
part_start_sector=2048
sector=512
disk_id=0x63737973
mbr=/usr/lib/syslinux/mbr/mbr.bin

kernel=$("$here/build-kernel.sh" | tail -1)
initramfs=$("$here/build-initramfs.sh" | tail -1)
recipe=$(
  guest_recipe_file "$here/build-syslinux-disk.sh"
  guest_recipe_file "$here/lib.sh"
  printf 'input kernel %s\n' "$(sha256sum <"$kernel/bzImage" | cut -d' ' -f1)"
  printf 'input cmdline %s\n' "$(sha256sum <"$kernel/cmdline" | cut -d' ' -f1)"
  printf 'input initramfs %s\n' "$(sha256sum <"$initramfs" | cut -d' ' -f1)"
  guest_recipe_package syslinux
  guest_recipe_package syslinux-common
  guest_recipe_package mtools
  guest_recipe_package dosfstools
)
guest_begin syslinux-disk "$recipe" disk.img

cmdline=$(<"$kernel/cmdline")
[[ -f $mbr && $(stat -c %s "$mbr") -eq 440 ]] || guest_die "$mbr is not SYSLINUX's 440-byte MBR"

# 1. The FAT file system with SYSLINUX, its configuration, the kernel and the initramfs.
part=$GUEST_WORK/part.img
part_bytes=$(( disk_mib * 1024 * 1024 - part_start_sector * sector ))
rm -f "$part"
truncate -s "$part_bytes" "$part"
mkfs.fat -F 16 -n CSVMMSYSLNX -i 63737973 -h $part_start_sector "$part" >/dev/null
# SERIAL 0: SYSLINUX writes COM1 itself. The firmware's serial console (SeaBIOS's sercon) carries its BIOS console to
# COM1 too, but lazily: a line may still sit in sercon's screen buffer when SYSLINUX leaves for the kernel. The two
# copies interleave on COM1; the tests match markers as in-order subsequences.
printf '%s\n' 'SERIAL 0 115200' 'PROMPT 0' 'TIMEOUT 0' 'DEFAULT linux' 'SAY csvmm-syslinux: loading the kernel' \
  'LABEL linux' '  KERNEL /bzImage' '  INITRD /initrd' "  APPEND $cmdline" >"$GUEST_WORK/syslinux.cfg"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$part" "$kernel/bzImage" ::/bzImage
mcopy -i "$part" "$initramfs" ::/initrd
mcopy -i "$part" "$GUEST_WORK/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$part"
mdir -a -b -i "$part" :: | grep -qi 'ldlinux.sys' || guest_die "syslinux did not install ldlinux.sys"
fsck.fat -n "$part" >"$GUEST_WORK/fsck.log" 2>&1 || { cat "$GUEST_WORK/fsck.log"; guest_die "fsck.fat found errors"; }

# 2. The disk: MBR with one bootable FAT16 (LBA) partition, SYSLINUX's MBR code, the file system copied in.
disk=$GUEST_TMP/disk.img
truncate -s "$(( disk_mib * 1024 * 1024 ))" "$disk"
sfdisk --quiet --no-reread --no-tell-kernel "$disk" <<PARTITIONS
label: dos
label-id: $disk_id
unit: sectors

start=$part_start_sector, type=e, bootable
PARTITIONS
dd if="$mbr" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$disk" bs=1M seek=$(( part_start_sector * sector / 1048576 )) conv=notrunc,sparse status=none
[[ $(xxd -p -s 510 -l 2 "$disk") == 55aa ]] || guest_die "the MBR has no boot signature"
sfdisk --dump "$disk" | grep -qE ": start= *$part_start_sector, .*type=e, bootable$" || guest_die "the partition table is not as intended"
guest_log "${disk_mib} MiB, FAT16 partition 1 at sector $part_start_sector with SYSLINUX, /bzImage, /initrd"
guest_done
