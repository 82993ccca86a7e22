# shellcheck shell=bash
# Shared by tests/guest/build-*.sh (sourced, not run): the guest-kit cache, its keys, its lock and atomic publication.
#
# A cache entry is $CSVMM_CACHE/<name>-<key>/. <key> is the first 16 hex digits of the SHA-256 of the entry's recipe:
# the text lines that list every input (this kit's files by content hash, Debian packages and tools by version). The
# recipe is stored in the entry as `recipe`. An entry is built in a hidden temporary directory beside it and renamed
# into place only when complete, so an entry that exists is whole. Builders of the same entry serialise on a flock.
#
# Everything a builder prints goes to stderr; its stdout carries one line, the path of the entry (guest_done).

GUEST_KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CSVMM_CACHE=${CSVMM_CACHE:-$HOME/.cache/csvmm}

# Keep the caller's stdout for the result path only; progress and tool output go to stderr.
exec {GUEST_RESULT_FD}>&1 1>&2

guest_log() { printf '%s: %s\n' "${GUEST_NAME:-guest}" "$*" >&2; }
guest_die() { guest_log "error: $*"; exit 1; }

# guest_recipe_file PATH: a recipe line naming a kit file (relative to tests/guest) and its content hash.
guest_recipe_file() {
  local path=$1 rel
  [[ -f $path ]] || guest_die "recipe input $path does not exist"
  rel=$(realpath --relative-to="$GUEST_KIT_DIR" "$path")
  printf 'file %s %s\n' "$rel" "$(sha256sum <"$path" | cut -d' ' -f1)"
}

# guest_package_version PKG: the installed version of a Debian package, or a clear failure.
guest_package_version() {
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || true
  [[ $v == 'install ok installed '* ]] || guest_die "Debian package $1 is not installed (apt-get install $1)"
  printf '%s\n' "${v#install ok installed }"
}

# guest_recipe_package PKG: a recipe line naming an installed Debian package and its version.
guest_recipe_package() { printf 'package %s %s\n' "$1" "$(guest_package_version "$1")"; }

# guest_begin NAME RECIPE [RESULT]: computes the entry's key. The builder's result is the entry's directory, or the file
# RESULT inside it. If the entry exists (and CSVMM_GUEST_REBUILD is not 1) prints the result and exits 0. Otherwise takes
# the entry's lock and sets GUEST_OUT (final path), GUEST_TMP (empty directory to fill, removed on failure) and
# GUEST_WORK (scratch directory that survives an interrupted build; guest_done removes it unless CSVMM_GUEST_KEEP_WORK=1).
guest_begin() {
  GUEST_NAME=$1
  GUEST_RECIPE=$2
  GUEST_RESULT=${3:-}
  local key
  key=$(printf '%s\n' "$GUEST_RECIPE" | sha256sum | cut -c1-16)
  GUEST_ID=$GUEST_NAME-$key
  GUEST_OUT=$CSVMM_CACHE/$GUEST_ID
  GUEST_WORK=$CSVMM_CACHE/work/$GUEST_ID
  guest_reuse_if_present

  mkdir -p "$CSVMM_CACHE/work"
  exec {GUEST_LOCK_FD}>"$CSVMM_CACHE/.$GUEST_ID.lock"
  if ! flock -n "$GUEST_LOCK_FD"; then
    guest_log "waiting for another build of $GUEST_ID"
    flock "$GUEST_LOCK_FD"
  fi
  # Whoever held the lock may have just published the entry.
  guest_reuse_if_present

  # We hold the lock: temporary directories of this entry that still exist belong to builds that were killed.
  rm -rf "$CSVMM_CACHE/.$GUEST_ID.tmp."*
  GUEST_TMP=$(mktemp -d "$CSVMM_CACHE/.$GUEST_ID.tmp.XXXXXX")
  trap 'rm -rf "$GUEST_TMP"' EXIT
  chmod 755 "$GUEST_TMP"
  printf '%s\n' "$GUEST_RECIPE" >"$GUEST_TMP/recipe"
  mkdir -p "$GUEST_WORK"
  guest_log "building $GUEST_OUT"
}

guest_reuse_if_present() {
  if [[ ${CSVMM_GUEST_REBUILD:-0} != 1 && -d $GUEST_OUT ]]; then
    guest_print_result
    exit 0
  fi
}

guest_print_result() { printf '%s\n' "$GUEST_OUT${GUEST_RESULT:+/$GUEST_RESULT}" >&"$GUEST_RESULT_FD"; }

# guest_done: publishes GUEST_TMP as GUEST_OUT with one rename, drops the scratch directory, prints the result.
guest_done() {
  local old=""
  [[ -z $GUEST_RESULT || -f $GUEST_TMP/$GUEST_RESULT ]] || guest_die "the build did not produce $GUEST_RESULT"
  if [[ -d $GUEST_OUT ]]; then
    # Forced rebuild: move the previous entry aside first (rename cannot replace a non-empty directory).
    old=$(mktemp -d "$CSVMM_CACHE/.$GUEST_ID.old.XXXXXX")
    mv "$GUEST_OUT" "$old/"
  fi
  mv -T "$GUEST_TMP" "$GUEST_OUT"
  trap - EXIT
  [[ -z $old ]] || rm -rf "$old"
  [[ ${CSVMM_GUEST_KEEP_WORK:-0} == 1 ]] || rm -rf "$GUEST_WORK"
  guest_log "done: $GUEST_OUT"
  guest_print_result
}

# guest_linux_tarball: path of Debian's linux-source tarball (package linux-source-<series>).
GUEST_LINUX_SERIES=6.1
guest_linux_tarball() {
  local t=/usr/src/linux-source-$GUEST_LINUX_SERIES.tar.xz
  guest_package_version "linux-source-$GUEST_LINUX_SERIES" >/dev/null
  [[ -f $t ]] || guest_die "$t is missing although linux-source-$GUEST_LINUX_SERIES is installed"
  printf '%s\n' "$t"
}
