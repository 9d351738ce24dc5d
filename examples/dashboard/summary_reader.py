#!/usr/bin/env python3
"""Reads a lockstep summary file (rt.serve({ summaryFile }), docs/DASHBOARD.md "The summary
file") by mapping it (mmap) in another process, with the seqlock protocol: the sequence number
at offset 8 is odd while the writer writes; copy the 256 bytes between two reads of the same
even sequence number, else retry.

    python3 examples/dashboard/summary_reader.py <file>           one snapshot, as JSON
    python3 examples/dashboard/summary_reader.py <file> --watch   one line per second
"""
import json
import mmap
import struct
import sys
import time

SIZE = 256
FIELDS_U64 = {
    "writtenAtMs": 16, "pid": 24, "tick": 40, "agents": 48, "running": 56, "preempted": 64,
    "faulted": 72, "stopped": 80, "killed": 88, "eventsQueued": 96, "deadLettersQueued": 104,
    "hostMessagesQueued": 112, "pendingInputs": 120, "messagesRoutedLastTick": 128,
    "messagesRoutedTotal": 136, "faultsTotal": 144, "inferenceRequests": 216, "inferenceCalls": 224,
}
FIELDS_F64 = {"tickP50Us": 152, "tickP99Us": 160, "ticksPerSecond": 168, "messagesPerSecond": 176}


def read_snapshot(mm, tries=100000):
    """One consistent snapshot as a dict, or None if every try met a write under way."""
    for i in range(tries):
        (before,) = struct.unpack_from("<Q", mm, 8)
        if before & 1:
            continue
        copy = mm[0:SIZE]
        (after,) = struct.unpack_from("<Q", mm, 8)
        if after != before:
            continue
        if copy[0:4] != b"LSDS":
            raise ValueError("not a lockstep summary file")
        (version, _) = struct.unpack_from("<IQ", copy, 4)
        if version != 1:
            raise ValueError("layout version %d; this reader knows 1" % version)
        out = {"seq": before, "retries": i}
        for name, off in FIELDS_U64.items():
            out[name] = struct.unpack_from("<Q", copy, off)[0]
        for name, off in FIELDS_F64.items():
            out[name] = struct.unpack_from("<d", copy, off)[0]
        out["live"] = bool(struct.unpack_from("<I", copy, 32)[0] & 1)
        out["hash"] = copy[184:216].hex()
        return out
    return None


def main():
    if len(sys.argv) < 2:
        print("usage: summary_reader.py <summary file> [--watch]", file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1], "rb") as f:
        mm = mmap.mmap(f.fileno(), SIZE, access=mmap.ACCESS_READ)
        if "--watch" not in sys.argv:
            print(json.dumps(read_snapshot(mm), indent=2))
            return
        while True:
            s = read_snapshot(mm)
            if s:
                print("tick %d  agents %d/%d running  %.1f ticks/s  %d msg/s" % (
                    s["tick"], s["running"], s["agents"], s["ticksPerSecond"], s["messagesPerSecond"]))
            time.sleep(1)


if __name__ == "__main__":
    main()
