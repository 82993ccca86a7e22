#!/usr/bin/env bash
# Compile csvmm's standalone SELinux policy (standalone/base.cil + the csvmm.cil module) into a
# binary policy for libsepol, and install the file_contexts beside it.
#   policy/build.sh [OUTDIR]      OUTDIR defaults to <repo>/out/policy
# Produces OUTDIR/policy.33 and OUTDIR/file_contexts. Idempotent; any failure exits non-zero
# with a message on stderr and leaves a previous good build untouched.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
out=${1:-$here/../out/policy}
die() { echo "policy/build.sh: $*" >&2; exit 1; }

command -v secilc >/dev/null || die "secilc not found (Debian package secilc)"
mkdir -p "$out" || die "cannot create $out"
out=$(readlink -f "$out")

tmp=$(mktemp -d "$out/.build.XXXXXX") || die "cannot create a temporary directory in $out"
trap 'rm -rf "$tmp"' EXIT

# -M false: MLS off, so contexts are user:role:type. -c 33: the policy version libsepol 3.4 and
# setools 4.4 read. -f /dev/null: the policy has no filecon statements; the file_contexts is
# maintained by hand (policy/file_contexts).
secilc --mls=false --policyvers=33 --output="$tmp/policy.33" --filecontext=/dev/null \
    "$here/standalone/base.cil" "$here/csvmm.cil" >"$tmp/secilc.log" 2>&1 \
    || { cat "$tmp/secilc.log" >&2; die "secilc failed"; }
[ -s "$tmp/policy.33" ] || die "secilc produced no policy"

# The libsepol engine refuses a policy without class vm; catch that here rather than at run time.
if command -v seinfo >/dev/null; then
    vm_class=$(seinfo "$tmp/policy.33" --class vm -x 2>&1) || die "seinfo cannot read the compiled policy: $vm_class"
    grep -qw entrypoint <<<"$vm_class" || die "compiled policy has no class vm with permission entrypoint"
fi

install -m 0644 "$here/file_contexts" "$tmp/file_contexts"
mv -f "$tmp/policy.33" "$out/policy.33"
mv -f "$tmp/file_contexts" "$out/file_contexts"
echo "policy/build.sh: $out/policy.33 $out/file_contexts" >&2
