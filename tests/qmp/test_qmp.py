#!/usr/bin/env python3
"""A QMP client (python3's standard library only) driving kickvm's monitor.

  test_qmp.py fake FAKE_SERVER KICKVM      the monitor in front of a fake
                                           machine: no /dev/kvm needed
  test_qmp.py kvm KICKVM SCRIPT_GUEST      a real `kickvm run -S -qmp`

Every wait is bounded; exit status 77 (meson's skip) says why when /dev/kvm
is missing.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

WAIT = 10.0          # seconds any single reply or event may take
failures = 0


def check(cond, what):
    global failures
    if cond:
        print("ok   " + what)
    else:
        failures += 1
        print("FAIL " + what)


class Client:
    def __init__(self, path, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.line()
        if negotiate:
            r = self.cmd("qmp_capabilities")
            assert r == {"return": {}}, r

    def line(self):
        """The next line as JSON; None when the server closed."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def reply(self):
        """The next reply; the events before it are kept in self.events."""
        while True:
            msg = self.line()
            if msg is None or "event" not in msg:
                return msg
            self.events.append(msg)

    def cmd(self, name, args=None, **extra):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        req.update(extra)
        self.send(json.dumps(req) + "\n")
        return self.reply()

    def event(self, name):
        """Wait for event @name (seen already, or to come)."""
        deadline = time.time() + WAIT
        while time.time() < deadline:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            msg = self.line()
            if msg is None:
                return None
            if "event" in msg:
                self.events.append(msg)
        return None

    def close(self):
        self.sock.close()


def error_class(r):
    return r.get("error", {}).get("class") if r else None


def check_session_basics(path):
    """Greeting, negotiation, shapes every QMP client relies on."""
    c = Client(path, negotiate=False)
    g = c.greeting
    check("QMP" in g and "qemu" in g["QMP"]["version"] and g["QMP"]["capabilities"] == [],
          "greeting has QMP.version.qemu and empty capabilities")
    check(error_class(c.cmd("query-status")) == "CommandNotFound",
          "before qmp_capabilities: CommandNotFound")
    r = c.cmd("qmp_capabilities", id="neg-1")
    check(r == {"return": {}, "id": "neg-1"}, "qmp_capabilities returns {} with the id")
    r = c.cmd("query-commands")
    names = {x["name"] for x in r["return"]}
    want = {"qmp_capabilities", "query-version", "query-commands", "query-status", "stop",
            "cont", "system_reset", "system_powerdown", "quit", "human-monitor-command",
            "query-ioeventfds", "query-exit-stats"}
    check(want <= names, "query-commands lists every command")
    r = c.cmd("query-version")
    check(r["return"]["package"] == "kickvm", "query-version")
    return c


def check_garbage(path):
    c = Client(path)
    for bad, cls in [("{\"execute\": ", "GenericError"), ("[1,2]", "GenericError"),
                     ("42", "GenericError"),
                     ('{"execute":"frobnicate"}', "CommandNotFound"),
                     ('{"execute":"human-monitor-command","arguments":{"command-line":7}}',
                      "GenericError"),
                     ('{"execute":"stop","arguments":{"now":true}}', "GenericError")]:
        c.send(bad + "\n")
        check(error_class(c.reply()) == cls, "garbage %r: %s" % (bad[:30], cls))
    # A line of several megabytes: an error, and the connection lives on.
    c.send(b" " * (3 << 20) + b"\n")
    r = c.reply()
    check(error_class(r) == "GenericError" and "longer" in r["error"]["desc"],
          "a 3 MiB line gets an error")
    check("return" in c.cmd("query-status"), "the connection survives it")
    # A client that never speaks, one that leaves mid-request, many cycles.
    silent = Client(path, negotiate=False)
    half = Client(path)
    half.send('{"execute":"query-st')
    half.close()
    for i in range(100):
        t = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        t.connect(path)
        if i % 2:
            t.sendall(b'{"execute":"qmp_capabilities"}\n')
        t.close()
    check("return" in c.cmd("query-status"), "served after 100 connect/disconnect cycles")
    silent.close()
    c.close()


def check_info(c):
    for what in ("mtree", "flatview", "ioeventfds", "stats"):
        r = c.cmd("human-monitor-command", {"command-line": "info " + what})
        check(isinstance(r.get("return"), str) and r["return"], "info %s returns text" % what)
    r = c.cmd("query-ioeventfds")
    ok = isinstance(r.get("return"), list) and all(
        {"address-space", "addr", "len", "path", "kvm-signals", "fallback-signals",
         "dynamic"} <= set(e) for e in r["return"])
    check(ok, "query-ioeventfds entries have their fields")
    r = c.cmd("query-exit-stats")
    check("vcpus" in r.get("return", {}) and "devices" in r["return"], "query-exit-stats")
    return r.get("return")


def run_stat(kickvm, path, *args):
    return subprocess.run([kickvm, "stat", *args, path], capture_output=True, text=True,
                          timeout=30)


def fake_mode(server, kickvm):
    tmp = tempfile.mkdtemp(prefix="kickvm-qmp-")
    path = os.path.join(tmp, "qmp.sock")
    srv = subprocess.Popen([server, path, "60"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        check(srv.stdout.readline().strip() == "ready", "fake-machine server listening")
        check(os.stat(path).st_mode & 0o777 == 0o600, "socket mode 0600")
        a = check_session_basics(path)
        b = Client(path)
        r = a.cmd("stop", id=1)
        check(r == {"return": {}, "id": 1}, "stop")
        check(a.event("STOP") is not None, "STOP to the client that asked")
        e = b.event("STOP")
        check(e is not None and "seconds" in e["timestamp"] and "microseconds" in e["timestamp"],
              "STOP to every negotiated client, with a timestamp")
        check(a.cmd("query-status")["return"]["status"] == "paused", "query-status: paused")
        a.cmd("cont")
        check(b.event("RESUME") is not None, "RESUME")
        check_info(a)
        srv.stdin.write("needs-reset\n")
        srv.stdin.flush()
        e = b.event("NEEDS_RESET")
        check(e is not None and e["data"]["device"] == "virtio-blk0", "NEEDS_RESET event")
        check_garbage(path)
        b.close()

        # kickvm stat against the same monitor (nobody else queries meanwhile).
        p = run_stat(kickvm, path, "--once", "--json")
        try:
            s = json.loads(p.stdout)
            cpu0, blk = s["vcpus"][0], s["devices"][1]
            ok = (cpu0["mmio"]["delta"] == 100 and blk["requests"]["delta"] == 300 and
                  abs(cpu0["mmio"]["rate"] * s["seconds"] - 100) < 1e-6 and
                  blk["needs-reset"] is True)
        except (ValueError, KeyError, IndexError):
            ok = False
        check(p.returncode == 0 and ok, "kickvm stat --once --json: deltas and rates")
        p = run_stat(kickvm, path, "--once")
        lines = p.stdout.splitlines()
        check(p.returncode == 0 and any("cpu0" in l for l in lines) and
              any("virtio-blk0" in l for l in lines) and max(map(len, lines)) <= 80,
              "kickvm stat --once: a screen within 80 columns")
        print("\n".join("    " + l for l in lines))
        p = run_stat(kickvm, os.path.join(tmp, "nothing-here"), "--once")
        check(p.returncode == 2, "kickvm stat on a missing socket: status 2")
        # Bad -qmp / -S: status 2 before any machine (no KVM needed).
        for args, msg in ((["-S"], "-S needs -qmp"),
                          (["-qmp", "tcp:localhost:4444"], "unix:PATH"),
                          (["-qmp", "unix:" + path + ",server=off"], "only listens")):
            p = subprocess.run([kickvm, "run"] + args, capture_output=True, text=True,
                               timeout=30)
            check(p.returncode == 2 and msg in p.stderr, "kickvm run %s: status 2" % " ".join(args))

        r = a.cmd("system_reset")
        check("return" in r and a.event("RESET")["data"]["reason"] == "host-qmp-system-reset",
              "system_reset: RESET with its reason")
        r = a.cmd("quit")
        check(r == {"return": {}}, "quit")
        e = a.event("SHUTDOWN")
        check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-quit"},
              "SHUTDOWN after quit, reason host-qmp-quit")
        check(srv.wait(timeout=WAIT) == 0, "the server ended")
        check(not os.path.exists(path), "the socket path is gone")
        a.close()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(tmp)


def start_vm(kickvm, path, args):
    vm = subprocess.Popen([kickvm, "run", "-qmp", "unix:%s,server=on,wait=off" % path] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + WAIT
    while not os.path.exists(path) and time.time() < deadline and vm.poll() is None:
        time.sleep(0.05)
    return vm


def cpu0_mmio(c):
    return c.cmd("query-exit-stats")["return"]["vcpus"][0]["exits"]["mmio"]


def kvm_mode(kickvm, script_guest):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: no usable /dev/kvm")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="kickvm-qmp-")
    path = os.path.join(tmp, "qmp.sock")
    # A guest that counts: trapped MMIO writes (each one an exit) for ages.
    vm = start_vm(kickvm, path, ["-S", "-a", "cpl3; w4 0xfe001300 1 4000000000",
                                 script_guest])
    try:
        c = Client(path)
        check(c.cmd("query-status")["return"]["status"] == "prelaunch", "-S: prelaunch")
        before = cpu0_mmio(c)
        check(before == 0, "-S: no exit before cont")
        c.cmd("cont")
        check(c.event("RESUME") is not None, "cont: RESUME")
        deadline = time.time() + WAIT
        while cpu0_mmio(c) == 0 and time.time() < deadline:
            time.sleep(0.05)
        check(cpu0_mmio(c) > 0, "the guest counts after cont")
        c.cmd("stop")
        check(c.event("STOP") is not None, "stop: STOP")
        check(c.cmd("query-status")["return"]["status"] == "paused", "query-status: paused")
        n1 = cpu0_mmio(c)
        time.sleep(0.3)
        check(cpu0_mmio(c) == n1, "stopped: the count does not move")
        c.cmd("cont")
        deadline = time.time() + WAIT
        while cpu0_mmio(c) == n1 and time.time() < deadline:
            time.sleep(0.05)
        check(cpu0_mmio(c) > n1, "cont: it counts again")
        stats = check_info(c)
        check(stats["devices"][0]["doorbells"]["trapped"] > 0, "trapped writes counted")
        p = run_stat(kickvm, path, "--once", "--json")
        check(p.returncode == 0 and json.loads(p.stdout)["vcpus"][0]["mmio"]["delta"] > 0,
              "kickvm stat sees exits per second")
        check(c.cmd("quit") == {"return": {}}, "quit")
        e = c.event("SHUTDOWN")
        check(e is not None and e["data"]["reason"] == "host-qmp-quit", "SHUTDOWN host-qmp-quit")
        check(vm.wait(timeout=WAIT) == 0, "kickvm ends with status 0 after quit")
        c.close()

        # A path that is not a socket is never replaced.
        with open(path, "w") as f:
            f.write("precious")
        p = subprocess.run([kickvm, "run", "-qmp", "unix:" + path, script_guest],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and "not a socket" in p.stderr and
              open(path).read() == "precious", "-qmp on a regular file: refused, file kept")
        os.unlink(path)

        # system_reset resets in place: RESET, the machine runs on (the
        # guest boots again and counts again), and quit ends it.
        vm = start_vm(kickvm, path, ["-a", "cpl3; w4 0xfe001300 1 4000000000", script_guest])
        c = Client(path)
        deadline = time.time() + WAIT
        while cpu0_mmio(c) < 100 and time.time() < deadline:
            time.sleep(0.05)
        n1 = cpu0_mmio(c)
        check(c.cmd("system_reset") == {"return": {}}, "system_reset returns")
        check(c.event("RESET") is not None, "system_reset: RESET")
        deadline = time.time() + WAIT
        while cpu0_mmio(c) < n1 + 100 and time.time() < deadline:
            time.sleep(0.05)
        check(cpu0_mmio(c) >= n1 + 100, "after system_reset the guest counts again")
        check(c.cmd("query-status")["return"]["status"] == "running", "running after reset")
        check(c.cmd("quit") == {"return": {}}, "quit after reset")
        check(vm.wait(timeout=WAIT) == 0, "status 0 after reset and quit")
        c.close()

        # -no-reboot: system_reset ends the machine as QEMU's does.
        vm = start_vm(kickvm, path, ["-no-reboot", "-a", "cpl3; w4 0xfe001300 1 4000000000",
                                     script_guest])
        c = Client(path)
        c.cmd("system_reset")
        check(c.event("RESET") is not None, "-no-reboot system_reset: RESET")
        e = c.event("SHUTDOWN")
        check(e is not None and e["data"]["reason"] == "host-qmp-system-reset",
              "-no-reboot system_reset: SHUTDOWN host-qmp-system-reset")
        check(vm.wait(timeout=WAIT) == 3, "-no-reboot: kickvm ends with the reboot status 3")
        c.close()

        # The guest ending by itself still says so.
        vm = start_vm(kickvm, path, ["-S", "-a", "cpl3; w4 0xfe001300 1 10; exit 0",
                                     script_guest])
        c = Client(path)
        c.cmd("cont")
        e = c.event("SHUTDOWN")
        check(e is not None and e["data"] == {"guest": True, "reason": "guest-shutdown"},
              "a guest that exits: SHUTDOWN guest-shutdown")
        check(vm.wait(timeout=WAIT) == 0, "status 0")
        c.close()
    finally:
        if vm.poll() is None:
            vm.kill()
        out = vm.communicate()[0]
        if failures:
            print(out)
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(tmp)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("fake", "kvm"):
        print(__doc__)
        return 2
    if sys.argv[1] == "fake":
        fake_mode(sys.argv[2], sys.argv[3])
    else:
        kvm_mode(sys.argv[2], sys.argv[3])
    print("%s" % ("FAILED: %d" % failures if failures else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
