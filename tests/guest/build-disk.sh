#!/usr/bin/env bash
# Builds csvmm's test disk: a raw image with an MBR partition table and one ext4 partition holding the same root file
# system as the initramfs (rootfs.sh: busybox-static, its applet links, /init and /sbin/init -> /init, /dev/console).
# No root, loop devices or mounts: the file system is made in a separate file with mkfs.ext4 -d and debugfs, then
# copied into the partition. Cached in $CSVMM_CACHE/disk-<key>/; prints the path of its disk.img as its last stdout
# line. Idempotent; concurrent callers build once. CSVMM_GUEST_REBUILD=1 forces a rebuild.
#
# Layout (fixed; tests may rely on it): 32 MiB disk, MBR disk identifier 0x6373766d, partition 1 type 0x83 from sector
# 2048 (1 MiB) to the end, so the kernel sees /dev/vda1 or /dev/sda1 with PARTUUID=6373766d-01; the ext4 file system
# has the label csvmm-root and the UUID in $fs_uuid below.
#
# Debian packages (build.sh installs them): busybox-static, e2fsprogs (mkfs.ext4, debugfs, e2fsck), fdisk (sfdisk).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=rootfs.sh
source "$here/rootfs.sh"

GUEST_NAME=disk
disk_mib=32
part_start_sector=2048
disk_id=0x6373766d
fs_uuid=6373766d-6d00-4d00-8000-726f6f746673
sector=512

busybox=$(guest_busybox)
recipe=$(
  guest_recipe_file "$here/build-disk.sh"
  guest_recipe_file "$here/lib.sh"
  guest_recipe_file "$here/rootfs.sh"
  guest_recipe_file "$here/init"
  guest_recipe_package busybox-static
  guest_recipe_package e2fsprogs
  guest_recipe_package fdisk
)
guest_begin disk "$recipe" disk.img

# 1. The root tree, from the same list the initramfs is made of. Device nodes and ownership go in with debugfs later,
#    so an unprivileged builder makes the same image as root.
stage=$GUEST_WORK/root
rm -rf "$stage"
mkdir -p "$stage"
guest_rootfs_list "$busybox" >"$GUEST_WORK/rootfs.list"
debugfs_cmds=$GUEST_WORK/debugfs.cmds
: >"$debugfs_cmds"
while read -r kind path f3 f4 f5 f6 f7 f8; do
  [[ $path == /* && $path != *..* ]] || guest_die "bad path '$path' in the rootfs list"
  case $kind in
    dir) # dir <name> <mode> <uid> <gid>
      mkdir -p "$stage$path"; chmod "$f3" "$stage$path"; owner=("$f4" "$f5") ;;
    file) # file <name> <source> <mode> <uid> <gid>
      cp "$f3" "$stage$path"; chmod "$f4" "$stage$path"; owner=("$f5" "$f6") ;;
    slink) # slink <name> <target> <mode> <uid> <gid>
      ln -s "$f3" "$stage$path"; owner=("$f5" "$f6") ;;
    nod) # nod <name> <mode> <uid> <gid> <c|b> <major> <minor>
      case $f6 in c) type=8#20000 ;; b) type=8#60000 ;; *) guest_die "bad node type '$f6' for $path" ;; esac
      printf 'cd %s\nmknod %s %s %s %s\nsif %s mode 0%o\n' "$(dirname "$path")" "$(basename "$path")" "$f6" "$f7" "$f8" \
        "$path" "$(( type | 8#$f3 ))" >>"$debugfs_cmds"
      owner=("$f4" "$f5") ;;
    *) guest_die "unknown entry kind '$kind' in the rootfs list" ;;
  esac
  printf 'sif %s uid %s\nsif %s gid %s\n' "$path" "${owner[0]}" "$path" "${owner[1]}" >>"$debugfs_cmds"
done <"$GUEST_WORK/rootfs.list"

# 2. The ext4 file system, with the feature set pinned here rather than taken from the host's /etc/mke2fs.conf (every
#    feature below is supported by the 6.1 test kernel).
cat >"$GUEST_WORK/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
EOF
part=$GUEST_WORK/part.img
part_bytes=$(( disk_mib * 1024 * 1024 - part_start_sector * sector ))
rm -f "$part"
truncate -s "$part_bytes" "$part"
MKE2FS_CONFIG=$GUEST_WORK/mke2fs.conf mkfs.ext4 -q -F -t ext4 -T default -L csvmm-root -U "$fs_uuid" \
  -E "root_owner=0:0,hash_seed=$fs_uuid" -d "$stage" "$part"
debugfs -w -f "$debugfs_cmds" "$part" >"$GUEST_WORK/debugfs.log" 2>&1 \
  || { cat "$GUEST_WORK/debugfs.log"; guest_die "debugfs failed"; }
# debugfs reports a failed command on its output but still exits 0.
! grep -vE '^(debugfs [0-9]|debugfs: |Allocated inode: )' "$GUEST_WORK/debugfs.log" | grep -q . \
  || { cat "$GUEST_WORK/debugfs.log"; guest_die "a debugfs command failed"; }
e2fsck -fn "$part" >"$GUEST_WORK/e2fsck.log" 2>&1 || { cat "$GUEST_WORK/e2fsck.log"; guest_die "e2fsck found errors"; }
[[ $(debugfs -R 'stat /dev/console' "$part" 2>/dev/null) == *'Type: character special'* ]] \
  || guest_die "/dev/console is not a character device in the file system"

# 3. The disk: MBR with one bootable Linux partition, the file system copied in (sparse).
disk=$GUEST_TMP/disk.img
truncate -s "$(( disk_mib * 1024 * 1024 ))" "$disk"
sfdisk --quiet --no-reread --no-tell-kernel "$disk" <<EOF
label: dos
label-id: $disk_id
unit: sectors

start=$part_start_sector, type=83, bootable
EOF
dd if="$part" of="$disk" bs=1M seek=$(( part_start_sector * sector / 1048576 )) conv=notrunc,sparse status=none
sfdisk --dump "$disk" | grep -qE ": start= *$part_start_sector, size= *$(( part_bytes / sector )), type=83, bootable$" \
  || { sfdisk --dump "$disk" >&2; guest_die "the partition table is not as intended"; }
guest_log "${disk_mib} MiB, partition 1 at sector $part_start_sector, PARTUUID=${disk_id#0x}-01, ext4 UUID $fs_uuid"
printf 'PARTUUID=%s-01\n' "${disk_id#0x}" >"$GUEST_TMP/root"
guest_done
