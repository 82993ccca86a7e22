#!/usr/bin/env bash
# csvmm: set up a fresh Debian 12 machine and build everything (./build.sh), or run every test (./build.sh test).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
ROOT=$PWD
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export CSVMM_CACHE=${CSVMM_CACHE:-$HOME/.cache/csvmm}

# Debian packages csvmm's build, tests and benchmarks need (installed only when missing).
APT_PACKAGES=(
  build-essential patch linux-libc-dev   # gcc, libc6-dev, make: struct-layout tests compile C against <linux/kvm.h>; bench's C KVM loop
  linux-source bc flex bison libelf-dev libssl-dev cpio lz4 xz-utils   # the test kernel (tests/guest)
  busybox-static e2fsprogs fdisk     # initramfs and ext4 disk images for guests
  grub-pc-bin xxd                    # GRUB (i386-pc) on the BIOS-bootable test disk
  syslinux syslinux-common mtools dosfstools   # SYSLINUX on a FAT test disk (its 32-bit iretd: the emulation fallback)
  golang-go golang-github-digitalocean-go-qemu-dev   # tests/qmp-client: a QMP client csvmm did not write
  qemu-system-x86 seabios            # the benchmark baseline and real firmware
  acpica-tools                       # iasl: independent check of csvmm's ACPI tables
  libseccomp2                        # the per-thread seccomp filters (--seccomp), through P/Invoke
  secilc checkpolicy setools libsepol-dev   # SELinux policy build and oracle (sesearch)
  strace
  afl++                              # tests/fuzz: coverage-guided fuzzing (SharpFuzz-instrumented targets)
)

log() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
  local missing=() p
  # A stock distro kernel only boots in reasonable time on hardware KVM: its boot test runs only there.
  if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then APT_PACKAGES+=(linux-image-cloud-amd64); fi
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v dotnet >/dev/null || { echo "build.sh: the .NET 10 SDK (dotnet) is required" >&2; exit 1; }
}

build_managed() {
  log "restore + build"
  dotnet build csvmm.slnx -c Release -v quiet -nologo -clp:NoSummary -p:WarningLevel=4 >"$ROOT/out/build.log" 2>&1 \
    || { grep -E 'error|warning' "$ROOT/out/build.log" | sort -u | head -50 >&2; echo "build.sh: build failed (out/build.log)" >&2; exit 1; }
  log "NativeAOT publish -> out/csvmm"
  dotnet publish src/Csvmm/Csvmm.csproj -c Release -r linux-x64 -o "$ROOT/out/publish" -v quiet -nologo >"$ROOT/out/publish.log" 2>&1 \
    || { tail -30 "$ROOT/out/publish.log" >&2; echo "build.sh: publish failed (out/publish.log)" >&2; exit 1; }
  cp -f "$ROOT/out/publish/csvmm" "$ROOT/out/csvmm"
}

build_guest_kit() {
  local s
  for s in tests/guest/build-kernel.sh tests/guest/build-initramfs.sh tests/guest/build-disk.sh tests/guest/build-boot-disk.sh tests/guest/build-syslinux-disk.sh; do
    [ -x "$s" ] || continue
    log "guest kit: $s"
    "$s" >"$ROOT/out/$(basename "$s" .sh).log" 2>&1 || { tail -40 "$ROOT/out/$(basename "$s" .sh).log" >&2; echo "build.sh: $s failed" >&2; exit 1; }
  done
}

setup() {
  mkdir -p out "$CSVMM_CACHE"
  ensure_packages
  [ -x policy/build.sh ] && { log "policy"; policy/build.sh; }
  log "firmware"; firmware/build.sh
  build_managed
  log "fuzz harness: SharpFuzz instrumenter (dotnet tool)"
  (cd tests/fuzz && dotnet tool restore >"$ROOT/out/fuzz-tools.log" 2>&1) || { cat "$ROOT/out/fuzz-tools.log" >&2; echo "build.sh: dotnet tool restore failed" >&2; exit 1; }
  build_guest_kit
}

run_tests() {
  local results="$ROOT/out/test-results"
  rm -rf "$results"; mkdir -p "$results"
  local status=0 proj name
  for proj in tests/*.Tests/*.csproj; do
    name=$(basename "$proj" .csproj)
    log "test: $name"
    dotnet test "$proj" -c Release --no-build -nologo -v quiet \
      --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=normal" \
      --results-directory "$results" >"$results/$name.log" 2>&1 || status=1
    grep -E '^\s+(Failed|Skipped) ' "$results/$name.log" | sed 's/^/    /' >&2 || true
  done
  local passed=0 failed=0 skipped=0 f c
  # Coverage-guided fuzzing: every target for a short fixed budget from its committed corpus (tests/fuzz/README.md).
  local fuzz_passed=0 fuzz_failed=0 target
  for target in $(dotnet tests/fuzz/Csvmm.Fuzz/bin/Release/net10.0/csvmm-fuzz.dll list | awk '{print $1}'); do
    log "fuzz: $target (${CSVMM_FUZZ_SECONDS:-15} s)"
    if CSVMM_FUZZ_SEED=${CSVMM_FUZZ_SEED:-1} tests/fuzz/run.sh "$target" "${CSVMM_FUZZ_SECONDS:-15}" >"$results/fuzz-$target.log" 2>&1; then
      fuzz_passed=$((fuzz_passed + 1))
    else
      fuzz_failed=$((fuzz_failed + 1)); status=1
      sed 's/^/    /' "$results/fuzz-$target.log" >&2
    fi
    tail -1 "$results/fuzz-$target.log" | sed 's/^/    /' >&2
  done
  for f in "$results"/*.trx; do
    [ -f "$f" ] || continue
    c=$(grep -o '<Counters [^>]*' "$f" | head -1)
    passed=$((passed + $(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$c")))
    failed=$((failed + $(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$c") + $(sed -n 's/.* error="\([0-9]*\)".*/\1/p' <<<"$c")))
    # Skipped tests are the ones the run did not execute (the TRX notExecuted counter stays 0 for them).
    skipped=$((skipped + $(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$c") - $(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$c")))
  done
  # A project that crashed or failed to run leaves no trx: count it as a failure.
  for proj in tests/*.Tests/*.csproj; do
    name=$(basename "$proj" .csproj)
    [ -f "$results/$name.trx" ] || { echo "build.sh: $name produced no results (see $results/$name.log)" >&2; failed=$((failed + 1)); status=1; }
  done
  passed=$((passed + fuzz_passed)); failed=$((failed + fuzz_failed))
  [ "$failed" -eq 0 ] || status=1
  echo "$passed passed, $failed failed, $skipped skipped"
  return $status
}

case "${1:-setup}" in
  setup|"") setup ;;
  test) setup; run_tests ;;
  *) echo "usage: ./build.sh [test]" >&2; exit 2 ;;
esac
