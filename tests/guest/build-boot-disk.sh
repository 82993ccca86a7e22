#!/usr/bin/env bash
# Builds csvmm's BIOS-bootable test disk: the test disk (build-disk.sh) with GRUB 2 (i386-pc, Debian's grub-pc-bin) in
# its MBR and the gap before partition 1, and the test kernel (build-kernel.sh) as /boot/bzImage in its ext4 file
# system. Booted by firmware (SeaBIOS) from either interface: MBR -> GRUB's core image -> the kernel with the kit's
# command line plus root=PARTUUID=6373766d-01 rootwait. Cached in $CSVMM_CACHE/boot-disk-<key>/; prints the path of
# its disk.img as its last stdout line. No root, loop devices or mounts: the kernel goes into the file system with
# debugfs, GRUB's images are written with dd, and the blocklist grub-install would patch is patched here.
#
# GRUB's configuration is built into its core image (grub-mkimage -c) and runs its commands directly: serial console
# on COM1, "csvmm-grub: loading the kernel", linux, boot. No menu, no timeout, no modules to load from the disk: under
# an emulating KVM every instruction GRUB runs costs ~0.5 us.
#
# Debian packages: grub-pc-bin (grub-mkimage, boot.img, diskboot.img and the i386-pc modules), e2fsprogs, fdisk, xxd.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

GUEST_NAME=boot-disk
part_start_sector=2048
sector=512
grub_dir=/usr/lib/grub/i386-pc

kernel=$("$here/build-kernel.sh" | tail -1)
disk_in=$("$here/build-disk.sh" | tail -1)
root=$(<"$(dirname "$disk_in")/root")
recipe=$(
  guest_recipe_file "$here/build-boot-disk.sh"
  guest_recipe_file "$here/lib.sh"
  printf 'input kernel %s\n' "$(sha256sum <"$kernel/bzImage" | cut -d' ' -f1)"
  printf 'input cmdline %s\n' "$(sha256sum <"$kernel/cmdline" | cut -d' ' -f1)"
  printf 'input disk %s\n' "$(basename "$(dirname "$disk_in")")"
  guest_recipe_package grub-pc-bin
  guest_recipe_package e2fsprogs
)
guest_begin boot-disk "$recipe" disk.img

cmdline="$(<"$kernel/cmdline") root=$root rootwait"
[[ $cmdline != *[\"\'\;\$\\]* ]] || guest_die "the kernel command line has characters GRUB's parser would interpret"

# 1. The kernel into the file system of partition 1.
part=$GUEST_WORK/part.img
dd if="$disk_in" of="$part" bs=1M skip=$(( part_start_sector * sector / 1048576 )) status=none
printf '%s\n' 'mkdir /boot' "write $kernel/bzImage /boot/bzImage" 'sif /boot/bzImage uid 0' 'sif /boot/bzImage gid 0' \
  | debugfs -w -f - "$part" >"$GUEST_WORK/debugfs.log" 2>&1
! grep -vE '^(debugfs [0-9]|debugfs: |Allocated inode: )' "$GUEST_WORK/debugfs.log" | grep -q . \
  || { cat "$GUEST_WORK/debugfs.log"; guest_die "a debugfs command failed"; }
e2fsck -fn "$part" >"$GUEST_WORK/e2fsck.log" 2>&1 || { cat "$GUEST_WORK/e2fsck.log"; guest_die "e2fsck found errors"; }
cmp -s <(debugfs -R 'cat /boot/bzImage' "$part" 2>/dev/null) "$kernel/bzImage" || guest_die "/boot/bzImage does not read back"

# 2. GRUB's core image with its configuration inside.
printf '%s\n' 'serial --unit=0 --speed=115200' 'terminal_input serial' 'terminal_output serial' \
  'echo csvmm-grub: loading the kernel' "linux (hd0,msdos1)/boot/bzImage $cmdline" 'echo csvmm-grub: booting' 'boot' \
  >"$GUEST_WORK/early.cfg"
core=$GUEST_WORK/core.img
grub-mkimage -O i386-pc -d "$grub_dir" -o "$core" -c "$GUEST_WORK/early.cfg" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 linux serial terminal echo boot
core_bytes=$(stat -c %s "$core")
core_sectors=$(( (core_bytes + sector - 1) / sector ))
(( core_sectors + 1 <= part_start_sector )) || guest_die "core.img ($core_sectors sectors) does not fit before sector $part_start_sector"
truncate -s $(( core_sectors * sector )) "$core"
# diskboot.img (the core image's first sector) ends with a blocklist: start sector (u64 LE) at 0x1F4, sector count
# (u16) at 0x1FC, load segment at 0x1FE. The rest of the core image follows it contiguously from sector 2.
[[ $(xxd -p -s 0x1F4 -l 8 "$core") == 0200000000000000 ]] || guest_die "diskboot.img's blocklist is not where this script expects it"
printf "$(printf '\\x%02x\\x%02x' $(( (core_sectors - 1) & 0xFF )) $(( (core_sectors - 1) >> 8 )))" \
  | dd of="$core" bs=1 seek=$((0x1FC)) conv=notrunc status=none
# boot.img (the MBR code) loads the core image's first sector from the sector at 0x5C: 1 by default.
[[ $(xxd -p -s 0x5C -l 8 "$grub_dir/boot.img") == 0100000000000000 ]] || guest_die "boot.img does not load sector 1"

# 3. The disk: a copy of the test disk with GRUB's MBR code (440 bytes: the disk identifier and partition table stay),
#    the core image from sector 1, and the partition with the kernel in it.
disk=$GUEST_TMP/disk.img
cp --sparse=always "$disk_in" "$disk"
dd if="$grub_dir/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$core" of="$disk" bs=$sector seek=1 conv=notrunc status=none
dd if="$part" of="$disk" bs=1M seek=$(( part_start_sector * sector / 1048576 )) conv=notrunc,sparse status=none
[[ $(xxd -p -s 510 -l 2 "$disk") == 55aa ]] || guest_die "the MBR lost its signature"
sfdisk --dump "$disk" | grep -qE ": start= *$part_start_sector, .*type=83, bootable$" || guest_die "the partition table changed"
printf '%s\n' "$root" >"$GUEST_TMP/root"
printf '%s\n' "$cmdline" >"$GUEST_TMP/cmdline"
guest_log "GRUB core image: $core_sectors sectors from sector 1; kernel /boot/bzImage; command line: $cmdline"
guest_done
