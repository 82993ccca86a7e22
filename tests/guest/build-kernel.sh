#!/usr/bin/env bash
# Builds csvmm's test kernel from Debian's linux-source-6.1: `make tinyconfig` + kernel.config + patches/*.patch.
# Cached in $CSVMM_CACHE/kernel-<key>/ (default ~/.cache/csvmm), holding bzImage, bzImage-int3-selftest (no int3 self-test patch), vmlinux (PVH ELF entry note, symbols),
# System.map, config, cmdline (the command line this project's hosts need) and recipe. Prints that path as its last
# stdout line. Idempotent; concurrent callers build once. CSVMM_GUEST_REBUILD=1 forces a rebuild.
#
# Debian packages (build.sh installs them): linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev lz4
# xz-utils (patch comes with build-essential's dpkg-dev).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

GUEST_NAME=kernel
config_fragment=$here/kernel.config
patches=("$here"/patches/*.patch)
[[ -f ${patches[0]} ]] || guest_die "no patches in $here/patches (the int3 self-test patch is required on this project's hosts)"

# The recommended guest command line for this project's hosts (see bench/README.md, "This host"): a serial console,
# one legacy UART, no legacy ptys, reboot at once on panic (the test's end marker with -no-reboot), and no CPU features
# whose instructions the emulating KVM cannot execute at CPL0. Every clearcpuid name is checked against the built kernel.
clear_cpuid=smap,smep,xsave,popcnt,rdrand,rdseed,cx16,pcid,invpcid,rdpid,rdtscp,avx,avx2,avx512f,bmi1,bmi2,movbe,umip,fsgsbase
cmdline="console=ttyS0 earlyprintk=serial,ttyS0 8250.nr_uarts=1 pty.legacy_count=0 panic=-1 noxsave clearcpuid=$clear_cpuid"

tarball=$(guest_linux_tarball)
recipe=$(
  guest_recipe_file "$here/build-kernel.sh"
  guest_recipe_file "$here/lib.sh"
  guest_recipe_file "$config_fragment"
  for p in "${patches[@]}"; do guest_recipe_file "$p"; done
  guest_recipe_package "linux-source-$GUEST_LINUX_SERIES"
  printf 'tool gcc %s\n' "$(gcc -dumpfullversion)"
  printf 'cmdline %s\n' "$cmdline"
)
guest_begin kernel "$recipe"

src=$GUEST_WORK/linux-source-$GUEST_LINUX_SERIES
obj=$GUEST_WORK/build
jobs=$(nproc)
kmake() {
  make -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" \
    KBUILD_BUILD_USER=csvmm KBUILD_BUILD_HOST=csvmm KBUILD_BUILD_TIMESTAMP="$(date -u -R -r "$tarball")" "$@"
}

# 1. Source: extracted and patched once per key; a build interrupted after this point resumes incrementally.
if [[ ! -f $GUEST_WORK/.source-ready ]]; then
  guest_log "extracting $tarball"
  rm -rf "$src" "$obj"
  tar -C "$GUEST_WORK" -xJf "$tarball"
  [[ -f $src/Makefile ]] || guest_die "$tarball did not unpack to $src"
  for p in "${patches[@]}"; do
    guest_log "applying $(basename "$p")"
    patch -d "$src" -p1 --batch --forward --no-backup-if-mismatch <"$p" || guest_die "patch $(basename "$p") does not apply"
  done
  touch "$GUEST_WORK/.source-ready"
fi

# 2. Configuration: tinyconfig, then the fragment merged over it, then defaults for everything newly visible.
mkdir -p "$obj"
kmake -s tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$config_fragment" >"$GUEST_WORK/merge_config.log" \
  || { cat "$GUEST_WORK/merge_config.log"; guest_die "merge_config.sh failed"; }
kmake -s olddefconfig

# Kconfig silently drops a wanted option whose dependencies are unmet and silently keeps one that another selects:
# compare every line of the fragment with the result.
bad=()
while IFS= read -r line; do
  if [[ $line =~ ^CONFIG_[A-Z0-9_]+= ]]; then
    grep -qxF -- "$line" "$obj/.config" || bad+=("wanted $line, got: $(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo absent)")
  elif [[ $line =~ ^#\ (CONFIG_[A-Z0-9_]+)\ is\ not\ set$ ]]; then
    ! grep -qE "^${BASH_REMATCH[1]}=" "$obj/.config" || bad+=("wanted ${BASH_REMATCH[1]} off, got: $(grep -E "^${BASH_REMATCH[1]}=" "$obj/.config")")
  fi
done <"$config_fragment"
if ((${#bad[@]})); then
  printf '  %s\n' "${bad[@]}" >&2
  guest_die "the configuration differs from $config_fragment in ${#bad[@]} option(s) (unmet dependency or a select)"
fi

# 3. Build. (An interrupted step 4 may have left the int3 patch reverted: the main kernel always has it.)
grep -q 'csvmm test kernel' "$src/arch/x86/kernel/alternative.c" \
  || patch -d "$src" -p1 --forward --batch --no-backup-if-mismatch <"$here/patches/0001-x86-alternative-skip-int3-selftest.patch" >/dev/null \
  || guest_die "cannot apply the int3 self-test patch"
guest_log "building vmlinux and bzImage with -j$jobs"
start=$SECONDS
kmake vmlinux bzImage
guest_log "kernel built in $((SECONDS - start)) s: $(kmake -s kernelrelease)"

# clearcpuid= ignores (with a warning) names the kernel does not know: refuse a command line with such a name.
capflags=$obj/arch/x86/kernel/cpu/capflags.c
[[ -f $capflags ]] || guest_die "$capflags missing: is CONFIG_X86_FEATURE_NAMES on?"
IFS=, read -ra names <<<"$clear_cpuid"
for n in "${names[@]}"; do
  grep -qF "= \"$n\"," "$capflags" || guest_die "clearcpuid name '$n' is unknown to this kernel"
done

# The PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY, note type 18) is what lets `-kernel vmlinux` boot.
readelf -n "$obj/vmlinux" | grep -q 'Xen.*0x00000012\|PHYS32_ENTRY' || guest_die "vmlinux has no PVH entry note"

cp "$obj/arch/x86/boot/bzImage" "$GUEST_TMP/bzImage"
cp "$obj/vmlinux" "$GUEST_TMP/vmlinux"
cp "$obj/System.map" "$GUEST_TMP/System.map"
cp "$obj/.config" "$GUEST_TMP/config"

# 4. The same kernel with Linux's int3 self-test left in (bzImage-int3-selftest): csvmm's emulation fallback delivers
# the int3 that this project's emulating KVM cannot, so it boots under csvmm (QEMU stops dead there). Only
# alternative.c differs: an incremental build. The source is patched again afterwards, and checked before step 3.
int3_patch=$here/patches/0001-x86-alternative-skip-int3-selftest.patch
guest_log "building bzImage-int3-selftest (without $(basename "$int3_patch"))"
patch -d "$src" -p1 -R --batch --no-backup-if-mismatch <"$int3_patch" >/dev/null || guest_die "cannot revert $(basename "$int3_patch")"
if ! kmake bzImage >"$GUEST_WORK/int3-selftest.log" 2>&1; then
  patch -d "$src" -p1 --forward --batch --no-backup-if-mismatch <"$int3_patch" >/dev/null
  tail -20 "$GUEST_WORK/int3-selftest.log" >&2
  guest_die "bzImage-int3-selftest failed to build"
fi
cp "$obj/arch/x86/boot/bzImage" "$GUEST_TMP/bzImage-int3-selftest"
patch -d "$src" -p1 --forward --batch --no-backup-if-mismatch <"$int3_patch" >/dev/null || guest_die "cannot re-apply $(basename "$int3_patch")"
kmake -s kernelrelease >"$GUEST_TMP/release"
printf '%s\n' "$cmdline" >"$GUEST_TMP/cmdline"
guest_done
