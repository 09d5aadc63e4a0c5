#!/usr/bin/env python3
"""A user-space link emulator for the network-fault tests: delay, loss and partitions
between a few hosts, for kernels built without the netem qdisc.

    link_emulator.py [--seed N] [--limit PACKETS] DEV=IP [DEV=IP ...]

Creates one TUN device (IFF_TUN | IFF_NO_PI) per host, named DEV, in the network namespace
it runs in; the test then moves each into its host's namespace (`ip link set DEV netns HOST`:
the device stays attached to this process's fd) and gives it the address IP. Every IPv4
packet a host sends is read from its device, and written to the device of the host owning
its destination address after the delay, unless it is lost (at random, with the loss
probability) or either host is cut off. The kernels' TCP stacks see real delay and real loss,
and retransmit for real.

Each packet crosses the emulator once: the delay is one way (a round trip takes twice it), as
with `tc netem` on every host's way out. Packets leave in time order (a heap by due time; a
link's packets never overtake each other, even when the delay changes), each link's queue is
bounded (`--limit`, netem's default of 1000 packets: beyond it a packet is dropped and
counted). What is not IPv4 for one of the hosts (IPv6 router solicitations, broadcasts) is
dropped and counted.

Commands, one a line on stdin, each answered with one line on stdout:

    set delay=MS loss=PCT   every link from now on           -> ok delay=MS loss=PCT
    cut IP                  the host drops off the network    -> ok cut IP
    heal IP                 and is back                       -> ok heal IP
    stats                   counters since the start          -> stats forwarded=N lost=N ...

It prints `ready` once the devices exist. It exits when stdin closes (the test ended, however
it ended) or on SIGTERM; its devices vanish with it. Standard library only.
"""

import fcntl
import heapq
import os
import random
import selectors
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 65535


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


class Emulator:
    def __init__(self, hosts, limit, rng):
        # hosts: [(dev, ip bytes)]
        self.rng = rng
        self.limit = limit
        self.delay = 0.0
        self.loss = 0.0
        self.fds = [open_tun(dev) for dev, _ in hosts]
        self.by_ip = {ip: i for i, (_, ip) in enumerate(hosts)}
        self.cut = set()
        self.heap = []  # (due, seq, link, dst fd, packet)
        self.seq = 0
        self.queued = {}  # link (src, dst) -> packets waiting
        self.last_due = {}  # link -> the due time of its last packet
        self.counts = dict(forwarded=0, lost=0, cut=0, overflow=0, unroutable=0, write_failed=0)
        self.max_queue = 0

    def received(self, src, packet, now):
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self.counts["unroutable"] += 1
            return
        dst = self.by_ip.get(bytes(packet[16:20]))
        if dst is None or dst == src:
            self.counts["unroutable"] += 1
            return
        if src in self.cut or dst in self.cut:
            self.counts["cut"] += 1
            return
        if self.loss > 0 and self.rng.random() < self.loss:
            self.counts["lost"] += 1
            return
        link = (src, dst)
        waiting = self.queued.get(link, 0)
        if waiting >= self.limit:
            self.counts["overflow"] += 1
            return
        due = max(now + self.delay, self.last_due.get(link, 0.0))
        self.last_due[link] = due
        self.queued[link] = waiting + 1
        self.max_queue = max(self.max_queue, waiting + 1)
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, link, self.fds[dst], packet))

    def send_due(self, now):
        while self.heap and self.heap[0][0] <= now:
            _, _, link, fd, packet = heapq.heappop(self.heap)
            self.queued[link] -= 1
            if link[0] in self.cut or link[1] in self.cut:
                # Cut off while it was on its way.
                self.counts["cut"] += 1
                continue
            try:
                os.write(fd, packet)
                self.counts["forwarded"] += 1
            except OSError:
                # The device is down or its host's stack refused it: lost on the wire.
                self.counts["write_failed"] += 1

    def next_due(self, now):
        return max(0.0, self.heap[0][0] - now) if self.heap else None

    def read_all(self, src):
        fd = self.fds[src]
        for _ in range(256):
            try:
                packet = os.read(fd, MTU)
            except BlockingIOError:
                return
            except OSError:
                return
            if not packet:
                return
            self.received(src, packet, time.monotonic())

    def command(self, line):
        words = line.split()
        if not words:
            return None
        if words[0] == "set":
            for word in words[1:]:
                key, _, value = word.partition("=")
                if key == "delay":
                    self.delay = float(value) / 1000.0
                elif key == "loss":
                    self.loss = float(value) / 100.0
                else:
                    return f"error unknown setting {key}"
            return f"ok delay={self.delay * 1000:g} loss={self.loss * 100:g}"
        if words[0] in ("cut", "heal") and len(words) == 2:
            try:
                ip = bytes(int(p) for p in words[1].split("."))
            except ValueError:
                return f"error not an address: {words[1]}"
            host = self.by_ip.get(ip)
            if host is None:
                return f"error no host {words[1]}"
            if words[0] == "cut":
                self.cut.add(host)
            else:
                self.cut.discard(host)
            return f"ok {words[0]} {words[1]}"
        if words[0] == "stats":
            return self.stats()
        return f"error unknown command {words[0]}"

    def stats(self):
        fields = " ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"stats {fields} queued={len(self.heap)} max_queue={self.max_queue}"


def parse(argv):
    seed, limit, hosts = None, 1000, []
    args = iter(argv)
    for arg in args:
        if arg == "--seed":
            seed = int(next(args))
        elif arg == "--limit":
            limit = int(next(args))
        else:
            dev, sep, ip = arg.partition("=")
            if not sep or not dev or len(dev) > 15:
                sys.exit(f"link_emulator: bad host {arg!r} (DEV=IP, DEV at most 15 characters)")
            hosts.append((dev, bytes(int(p) for p in ip.split("."))))
    if len(hosts) < 2:
        sys.exit("link_emulator: give at least two hosts (DEV=IP)")
    return seed, limit, hosts


def main():
    seed, limit, hosts = parse(sys.argv[1:])
    emulator = Emulator(hosts, limit, random.Random(seed))
    sel = selectors.DefaultSelector()
    for i, fd in enumerate(emulator.fds):
        sel.register(fd, selectors.EVENT_READ, i)
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    pending = b""
    while True:
        for key, _ in sel.select(emulator.next_due(time.monotonic())):
            if key.data != "stdin":
                emulator.read_all(key.data)
                continue
            chunk = os.read(key.fd, 4096)
            if not chunk:
                # The test is over, however it ended.
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                try:
                    answer = emulator.command(line.decode(errors="replace"))
                except ValueError as e:
                    answer = f"error {e}"
                if answer is not None:
                    out.write(answer + "\n")
                    out.flush()
        emulator.send_due(time.monotonic())


if __name__ == "__main__":
    main()
