#!/usr/bin/env python3
"""A fault-injection run against a real local mesh, reconciled against the ledger.

In the spirit of Jepsen's idempotence checks and TigerBeetle's simulator, but with real
processes on loopback: clients send requests with their own request ids (X-Request-Id) and
retry each id until it is answered, while the run kills workers and the coordinator with
SIGKILL at random moments (restarting them), fills the ledger's disk for a moment (a tmpfs of
its own, when the run may mount one: root), and holds connections that drip one byte at a
time. At the end it reconciles what the clients saw with the ledger:

  - every id a client saw answered is settled exactly once, for the cost the answer named;
  - every id never answered is settled at most once (a settlement whose answer was lost to a
    kill must be handed back by a retry: the run counts any left as a discrepancy);
  - no id is settled twice, and `loom-ledger verify` holds (double entry, hash chain, each
    settlement's records summing to its charge, so every device is paid exactly its records);
  - no credits are left held: once the clients stop, the client's available credits equal its
    balance (no reservation outlives its request, whatever killed or failed under it).

Bounded: it runs for --seconds, every wait has a timeout, everything listens on 127.0.0.1 and
lives in a temporary directory. Prints the figures and exits 1 on any discrepancy.

  tests/chaos.py --bin build/bin --seconds 60 [--clients 4] [--seed 7]
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


class Mesh:
    def __init__(self, bin_dir, work, disk):
        self.bin = bin_dir
        self.work = work
        self.disk = disk  # the ledger's own small file system, or None
        self.db = os.path.join(disk or work, "loom.db")
        self.secret = os.path.join(work, "join.secret")
        self.grpc = "127.0.0.1:0"
        self.http = "127.0.0.1:0"
        self.coordinator = None
        self.workers = {}
        self.logs = []

    def _log(self, name):
        path = os.path.join(self.work, f"{name}-{len(self.logs)}.log")
        self.logs.append(path)
        return open(path, "w")

    def ledger(self, *args):
        r = subprocess.run([os.path.join(self.bin, "loom-ledger"), f"--db={self.db}", *args],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"loom-ledger {' '.join(args)}: {r.stderr}")
        return r.stdout

    def start_coordinator(self):
        ready = os.path.join(self.work, "coordinator.ready")
        if os.path.exists(ready):
            os.remove(ready)
        self.coordinator = subprocess.Popen(
            [os.path.join(self.bin, "loom-coordinator"), f"--grpc_listen={self.grpc}",
             f"--http_listen={self.http}", f"--ledger_db={self.db}", "--plaintext",
             f"--join_secret_file={self.secret}", f"--ready_file={ready}",
             "--heartbeat_interval_ms=200", "--missed_heartbeats=3",
             "--attempt_timeout_ms=5000", "--request_timeout_ms=20000",
             "--reservation_margin_ms=1000", "--log_level=warn", "--instance_id=chaos"],
            stdout=subprocess.DEVNULL, stderr=self._log("coordinator"))
        info = json.loads(wait_for(lambda: os.path.exists(ready) and open(ready).read(), 30,
                                   "the coordinator"))
        # Restarts come back on the same ports, as an operator's would.
        self.grpc, self.http = info["grpc"], info["http"]

    def token(self, device):
        r = subprocess.run([os.path.join(self.bin, "loom-coordinator"),
                            f"--join_secret_file={self.secret}",
                            f"--issue_join_token={device}:prov-{device}"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def start_worker(self, device):
        ready = os.path.join(self.work, f"{device}.ready")
        if os.path.exists(ready):
            os.remove(ready)
        self.workers[device] = subprocess.Popen(
            [os.path.join(self.bin, "loom-worker"), f"--coordinator={self.grpc}",
             f"--device_id={device}", f"--provider_id=prov-{device}", "--model=mistral-7b",
             "--sim_output_tokens=60", "--sim_tokens_per_second=300", "--plaintext",
             f"--join_token={self.token(device)}", f"--ready_file={ready}", "--log_level=warn"],
            stdout=subprocess.DEVNULL, stderr=self._log(device))
        wait_for(lambda: os.path.exists(ready), 30, f"worker {device}")

    def kill(self, process):
        if process and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self):
        for p in list(self.workers.values()) + [self.coordinator]:
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


class Client(threading.Thread):
    """Sends requests with its own ids; retries each id until answered (bounded)."""

    def __init__(self, name, mesh, key, stop, seed):
        super().__init__(daemon=True)
        self.name, self.mesh, self.key, self.stop = name, mesh, key, stop
        self.rng = random.Random(seed)
        self.answered = {}   # id -> cost_micro the answer named
        self.unanswered = set()
        self.sent = 0
        self.replays = 0

    def ask(self, request_id, stream):
        host, port = self.mesh.http.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=25)
        body = {"model": "mistral-7b", "stream": stream,
                "messages": [{"role": "user", "content": f"Tell me about {request_id}."}]}
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(body),
                         {"Authorization": f"Bearer {self.key}", "X-Request-Id": request_id,
                          "Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read().decode("utf-8")
            if r.status != 200:
                return None, r.status
            if r.getheader("Idempotent-Replayed") == "true":
                self.replays += 1
            if not stream:
                return json.loads(data)["loom"]["cost_micro"], 200
            # A stream is answered when it ends with [DONE] and no in-band error.
            if "data: [DONE]" not in data or '"error"' in data:
                return None, 0
            return -1, 200  # streamed: the cost is checked from the ledger alone
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            return None, 0
        finally:
            conn.close()

    def run(self):
        n = 0
        while not self.stop.is_set():
            request_id = f"{self.name}-{n}"
            n += 1
            stream = self.rng.random() < 0.5
            for _ in range(40):  # retries of one id, ~20 s at most
                self.sent += 1
                cost, status = self.ask(request_id, stream)
                if cost is not None:
                    self.answered[request_id] = cost
                    break
                if status in (400, 401, 402, 404):
                    break  # can never succeed as sent
                time.sleep(0.5)
            else:
                self.unanswered.add(request_id)
            if request_id not in self.answered:
                self.unanswered.add(request_id)


def mount_disk(work):
    """A 64 MiB tmpfs for the ledger, so filling it fills nothing else; None if not allowed."""
    disk = os.path.join(work, "disk")
    os.mkdir(disk)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        print(f"chaos: cannot mount a tmpfs ({r.stderr.strip()}); no disk-full faults")
        return None
    return disk


def fill_disk(disk, rng):
    """Fills the ledger's file system to the last byte for a moment, then frees it."""
    filler = os.path.join(disk, "filler")
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"x" * size)
            except OSError:
                pass
    time.sleep(rng.uniform(1.0, 4.0))
    os.remove(filler)


def drip(mesh, stop):
    """Holds connections that send one byte of a request head every 0.5 s."""
    held = []
    while not stop.is_set():
        try:
            host, port = mesh.http.rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=2)
            held.append(s)
            if len(held) > 16:
                held.pop(0).close()
            for s in held:
                s.send(b"P")
        except OSError:
            pass
        stop.wait(0.5)
    for s in held:
        s.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="build/bin")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-disk", dest="disk", action="store_false",
                        help="no disk-full faults (they need a tmpfs mount)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="loom-chaos-")
    disk = mount_disk(work) if args.disk else None
    mesh = Mesh(os.path.abspath(args.bin), work, disk)
    faults = {"worker_kills": 0, "coordinator_kills": 0, "disk_fills": 0}
    started = time.monotonic()
    try:
        mesh.start_coordinator()
        mesh.ledger("grant", "client:chaos", "100000", "--reference=chaos")
        key = mesh.ledger("keys", "create", "--client=chaos").strip()
        for d in ("dev-1", "dev-2", "dev-3"):
            mesh.start_worker(d)
        stop = threading.Event()
        clients = [Client(f"c{i}", mesh, key, stop, rng.random()) for i in range(args.clients)]
        for c in clients:
            c.start()
        dripper = threading.Thread(target=drip, args=(mesh, stop), daemon=True)
        dripper.start()
        end = started + args.seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.5, 2.0))
            roll = rng.random()
            if disk and roll < 0.15:
                fill_disk(disk, rng)
                faults["disk_fills"] += 1
            elif roll < 0.35:
                mesh.kill(mesh.coordinator)
                faults["coordinator_kills"] += 1
                mesh.start_coordinator()
            else:
                device = rng.choice(sorted(mesh.workers))
                mesh.kill(mesh.workers[device])
                faults["worker_kills"] += 1
                mesh.start_worker(device)
        stop.set()
        for c in clients:
            c.join(timeout=60)
        dripper.join(timeout=10)
        # Settlements of ids a client never saw answered may still be handed back: retry each
        # once more, as a client would.
        for c in clients:
            for request_id in sorted(c.unanswered):
                cost, _ = c.ask(request_id, False)
                if cost is not None:
                    c.answered[request_id] = cost
                    c.unanswered.discard(request_id)
        balance = json.loads(mesh.ledger("balance", "client:chaos", "--format=json"))
        mesh.stop()

        records = json.loads(mesh.ledger("records", "--format=json", "--limit=1000000"))
        settled = {}
        for r in records:
            rid = r["requestId"].split("/", 1)[1]
            settled.setdefault(rid, {"credits": 0})
            settled[rid]["credits"] += int(r.get("creditsMicro", "0"))
        verify = subprocess.run([os.path.join(mesh.bin, "loom-ledger"), f"--db={mesh.db}",
                                 "verify"], capture_output=True, text=True, timeout=120)
        problems = []
        answered = unanswered = sent = replays = 0
        for c in clients:
            sent += c.sent
            replays += c.replays
            answered += len(c.answered)
            unanswered += len(c.unanswered)
            for request_id, cost in c.answered.items():
                if request_id not in settled:
                    problems.append(f"{request_id}: answered but never settled")
                elif cost >= 0 and settled[request_id]["credits"] != cost:
                    problems.append(f"{request_id}: answer says {cost}, ledger "
                                    f"{settled[request_id]['credits']}")
            for request_id in c.unanswered:
                if request_id in settled:
                    problems.append(f"{request_id}: settled, but its answer never reached "
                                    "the client")
        if answered == 0:
            problems.append("no request was answered: the run checked nothing")
        if faults["coordinator_kills"] + faults["worker_kills"] == 0:
            problems.append("no fault was injected: the run checked nothing")
        held = int(balance["balanceMicro"]) - int(balance["availableMicro"])
        if held != 0:
            problems.append(f"{held} micro-credits still held by reservations after the run")
        if verify.returncode != 0:
            problems.append(f"verify: {verify.stdout.strip()} {verify.stderr.strip()}")
        full = 0
        for path in mesh.logs:
            if "coordinator" in os.path.basename(path):
                with open(path, errors="replace") as f:
                    full += sum("disk is full" in line for line in f)
        elapsed = time.monotonic() - started
        print(f"chaos: {elapsed:.0f} s, {args.clients} clients, {sent} HTTP requests for "
              f"{answered + unanswered} request ids: {answered} answered ({replays} replays), "
              f"{unanswered} unanswered; faults: {faults['coordinator_kills']} coordinator "
              f"kills, {faults['worker_kills']} worker kills, {faults['disk_fills']} disk fills ({full} "
              f"ledger writes refused as disk full), 16 "
              f"dripping connections; "
              f"{len(settled)} settled ids; verify {'ok' if verify.returncode == 0 else 'FAILED'}; "
              f"discrepancies: {len(problems)}")
        for p in problems[:20]:
            print("  " + p)
        if problems:
            print(f"logs and ledger kept in {work}")
            return 1
        return 0
    finally:
        mesh.stop()
        if disk:
            subprocess.run(["umount", disk], capture_output=True, timeout=30)


if __name__ == "__main__":
    sys.exit(main())
