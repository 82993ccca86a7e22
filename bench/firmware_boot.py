#!/usr/bin/env python3
"""Boots that need more than KVM gives: csvmm vs QEMU 7.2 (-enable-kvm) on the same files, seconds from process start to
each serial marker. Usage: bench/firmware_boot.py [RUNS] [SCENARIO ...]

Scenarios:
  grub      the kit's GRUB disk alone (`csvmm --disk boot.img,if=ide`; QEMU `-drive file=boot.img,format=raw,if=ide`):
            SeaBIOS -> GRUB (i386-pc) -> the test kernel -> ext4 root mounted from the same disk.
  syslinux  the kit's SYSLINUX disk alone: SeaBIOS -> SYSLINUX, whose 32-bit iretd the host's emulating KVM cannot run
            (csvmm's emulation fallback carries it out; QEMU stops with an emulation failure) -> kernel -> "Run /init".
  int3      the test kernel built with Linux's int3 self-test (bzImage-int3-selftest), booted directly: the self-test's
            CPL0 int3 is another instruction the host's KVM cannot deliver.
A run ends at the scenario's last marker, at the VMM's exit, or after 400 s. Each run boots a fresh copy of the disk."""
import os, shutil, subprocess, sys, tempfile, time, select, json, statistics

def kit(script):
    return subprocess.run([f"tests/guest/{script}"], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]

CSVMM = os.environ.get("CSVMM", "out/csvmm")
QEMU = ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-m", "96", "-nographic", "-nodefaults", "-serial", "stdio",
        "-no-reboot"]

def scenario(name):
    if name == "grub":
        disk = kit("build-boot-disk.sh")
        markers = ["Booting from Hard Disk", "csvmm-grub: booting", "Linux version", "VFS: Mounted root (ext4 filesystem)"]
        return disk, markers, lambda d: [CSVMM, "--disk", f"{d},if=ide", "--memory", "96M", "--no-reboot"], \
            lambda d: [*QEMU, "-drive", f"file={d},format=raw,if=ide"]
    if name == "syslinux":
        disk = kit("build-syslinux-disk.sh")
        markers = ["Booting from Hard Disk", "SYSLINUX 6.04", "Linux version", "Run /init as init process"]
        return disk, markers, lambda d: [CSVMM, "--disk", f"{d},if=ide", "--memory", "96M", "--no-reboot"], \
            lambda d: [*QEMU, "-drive", f"file={d},format=raw,if=ide"]
    if name == "int3":
        k = kit("build-kernel.sh"); initrd = kit("build-initramfs.sh")
        kernel = os.path.join(k, "bzImage-int3-selftest"); cmdline = open(os.path.join(k, "cmdline")).read().strip()
        markers = ["Linux version", "smp: Brought up", "Run /init as init process"]
        return None, markers, lambda d: [CSVMM, "--kernel", kernel, "--initrd", initrd, "--append", cmdline, "--memory", "96M", "--no-reboot"], \
            lambda d: [*QEMU, "-kernel", kernel, "-initrd", initrd, "-append", cmdline]
    raise SystemExit(f"unknown scenario {name}")

def run(argv, markers):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    buf = b""; err = b""; seen = {}; end = "timeout (400 s)"
    while time.perf_counter() < t0 + 400:
        r, _, _ = select.select([p.stdout, p.stderr], [], [], 1.0)
        if p.stderr in r:
            chunk = os.read(p.stderr.fileno(), 65536)
            err += chunk
            # QEMU does not exit after a KVM emulation failure: it prints the registers and waits for ever.
            if b"KVM internal error" in err:
                end = f"stopped at {time.perf_counter() - t0:.1f} s"; break
        if p.stdout in r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                end = f"exited {p.wait()}"; break
            buf += chunk
            for m in markers:
                if m not in seen and m.encode() in buf: seen[m] = time.perf_counter() - t0
            if markers[-1] in seen:
                end = "reached"; break
    p.kill(); p.wait()
    err = (err + p.stderr.read()).decode(errors="replace")
    why = next((l.strip() for l in err.splitlines() if "emulation failure" in l or "internal error" in l.lower()), "")
    return seen, end, why

runs = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1
names = [a for a in sys.argv[1:] if not a.isdigit()] or ["grub", "syslinux", "int3"]
print(f"# {runs} run(s) each, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
for name in names:
    disk, markers, csvmm, qemu = scenario(name)
    for vmm, build in (("csvmm", csvmm), ("QEMU", qemu)):
        times = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as d:
                copy = None
                if disk:
                    copy = os.path.join(d, "disk.img"); shutil.copyfile(disk, copy)
                seen, end, why = run(build(copy), markers)
            times.append(seen.get(markers[-1]))
            print(f"{name:8} {vmm:5} {json.dumps({k: round(v, 1) for k, v in seen.items()})} [{end}]{' ' + why if why else ''}", flush=True)
        ok = [t for t in times if t is not None]
        print(f"{name:8} {vmm:5} median {statistics.median(ok):.1f} s to '{markers[-1]}'" if ok else f"{name:8} {vmm:5} never reached '{markers[-1]}'", flush=True)
