#!/usr/bin/env python3
"""Time from process start to the kernel's "VFS: Mounted root" line: the test kernel mounting its ext4 root read-write
from the kit's disk through virtio-blk (/dev/vda1) and through PIIX IDE (/dev/sda1), csvmm vs QEMU 7.2 with the same
kernel, command line and disk contents (each run boots a fresh copy of the disk). Usage: bench/disk_boot.py [RUNS]"""
import os, shutil, subprocess, sys, tempfile, time, select, json, statistics

def kit(script):
    return subprocess.run([f"tests/guest/{script}"], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]

K = kit("build-kernel.sh"); DISK = kit("build-disk.sh")
cmdline = open(os.path.join(K, "cmdline")).read().strip()
kernel = os.path.join(K, "bzImage")
MARKERS = ["Linux version", "PCI: Using ACPI for IRQ routing", "VFS: Mounted root (ext4 filesystem)"]

def command(vmm, bus, disk):
    dev = "vda" if bus == "virtio" else "sda"
    append = f"{cmdline} root=/dev/{dev}1 rw rootwait"
    if vmm == "csvmm":
        return [os.environ.get("CSVMM", "out/csvmm"), "--kernel", kernel, "--append", append, "--disk", f"{disk},if={bus}", "--cpus", "2",
                "--memory", "96M", "--no-reboot", "--serial", "stdio"]
    drive = ["-drive", f"file={disk},if=none,id=d0,format=raw"]
    device = ["-device", "virtio-blk-pci,drive=d0,disable-legacy=on"] if bus == "virtio" else ["-device", "ide-hd,drive=d0,bus=ide.0,unit=0"]
    return ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-smp", "2", "-m", "96", "-kernel", kernel, "-append", append,
            "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot", *drive, *device]

def run(vmm, bus):
    with tempfile.TemporaryDirectory() as d:
        disk = os.path.join(d, "disk.img"); shutil.copyfile(DISK, disk)
        t0 = time.perf_counter()
        p = subprocess.Popen(command(vmm, bus, disk), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        buf = b""; seen = {}
        while time.perf_counter() < t0 + 400:
            r, _, _ = select.select([p.stdout], [], [], 1.0)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk: break
                buf += chunk
                for m in MARKERS:
                    if m not in seen and m.encode() in buf: seen[m] = time.perf_counter() - t0
                if MARKERS[-1] in seen: break
        p.kill(); p.wait()
        return seen

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
print(f"# test kernel to 'VFS: Mounted root', {runs} run(s) each, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
for bus in ("virtio", "ide"):
    for vmm in ("csvmm", "QEMU"):
        times = []
        for _ in range(runs):
            seen = run(vmm, bus)
            times.append(seen.get(MARKERS[-1]))
            print(f"{bus:6} {vmm:5} {json.dumps({k: round(v, 1) for k, v in seen.items()})}", flush=True)
        ok = [t for t in times if t is not None]
        print(f"{bus:6} {vmm:5} median {statistics.median(ok):.1f} s" if ok else f"{bus:6} {vmm:5} root never mounted", flush=True)
