"""The benchmarks' QMP client (csvmm and QEMU alike): connect (retrying until the socket exists, until `deadline` on
time.perf_counter()), negotiate, run commands; events are skipped, an error reply raises."""
import json, socket, time

class Qmp:
    def __init__(self, path, deadline):
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX); self.s.connect(path); break
            except OSError:
                if time.perf_counter() > deadline: raise
                time.sleep(0.005)
        self.f = self.s.makefile("r")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args} if args else {"execute": name}).encode())
        while True:
            m = json.loads(self.f.readline())
            if "event" not in m:
                if "error" in m: raise RuntimeError(f"{name}: {m['error']}")
                return m["return"]
