# shellcheck shell=bash
# Sourced by build-initramfs.sh and build-disk.sh: the one description of the guest's root file system.

# guest_busybox: path of the static busybox from Debian's busybox-static, after checking it really is static.
guest_busybox() {
  local bb
  bb=$(dpkg-query -L busybox-static 2>/dev/null | grep -m1 '/bin/busybox$') \
    || guest_die "Debian package busybox-static is not installed (apt-get install busybox-static)"
  [[ -x $bb ]] || guest_die "$bb (busybox-static) is missing"
  ! readelf -l "$bb" | grep -q INTERP || guest_die "$bb is dynamically linked; the guest needs busybox-static"
  printf '%s\n' "$bb"
}

# guest_rootfs_list BUSYBOX: the root file system as a usr/gen_init_cpio list (dir, file, slink, nod lines):
# busybox with a link per applet, /init (the kit's init script), /sbin/init -> /init, /dev/console, mount points.
guest_rootfs_list() {
  local busybox=$1 d applet
  for d in bin sbin usr usr/bin usr/sbin dev proc sys tmp root etc mnt; do
    printf 'dir /%s 0755 0 0\n' "$d"
  done
  printf 'nod /dev/console 0600 0 0 c 5 1\n'
  printf 'file /init %s 0755 0 0\n' "$GUEST_KIT_DIR/init"
  printf 'slink /sbin/init /init 0777 0 0\n'
  printf 'file /bin/busybox %s 0755 0 0\n' "$busybox"
  # Applet paths as busybox reports them (bin/sh, sbin/poweroff, usr/bin/[, ...), minus the two placed above.
  "$busybox" --list-full | LC_ALL=C sort | while IFS= read -r applet; do
    case $applet in
      sbin/init | bin/busybox | linuxrc | */*/*/* | '' ) continue ;;
      bin/* | sbin/* | usr/bin/* | usr/sbin/*) printf 'slink /%s /bin/busybox 0777 0 0\n' "$applet" ;;
      *) guest_die "unexpected busybox applet path '$applet'" ;;
    esac
  done
}
