#!/usr/bin/env python3
"""Time from process start to the kernel's "Run /init" line on the serial console: csvmm vs QEMU, same kernel/initrd/cmdline."""
import os, subprocess, sys, time, select, json
K = subprocess.run(["tests/guest/build-kernel.sh"], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
I = subprocess.run(["tests/guest/build-initramfs.sh"], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
cmdline = open(os.path.join(K, "cmdline")).read().strip()
kernel = os.path.join(K, "bzImage")
vmms = {
    "csvmm": ["out/csvmm", "--kernel", kernel, "--initrd", I, "--append", cmdline, "--cpus", "2", "--memory", "96M", "--no-reboot", "--serial", "stdio"],
    "QEMU": ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-smp", "2", "-m", "96", "-kernel", kernel, "-initrd", I, "-append", cmdline,
             "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot"],
}
markers = ["Linux version", "smp: Brought up", "ttyS0 at I/O", "Run /init as init process"]
results = {}
for name in (sys.argv[1:] or vmms):
    cmd = vmms[name]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    buf = b""; seen = {}
    deadline = t0 + 400
    while time.perf_counter() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1.0)
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk: break
            buf += chunk
            for m in markers:
                if m not in seen and m.encode() in buf: seen[m] = time.perf_counter() - t0
            if "Run /init as init process" in seen: break
    p.kill(); p.wait()
    results[name] = seen
    print(name, json.dumps({k: round(v, 1) for k, v in seen.items()}), flush=True)
