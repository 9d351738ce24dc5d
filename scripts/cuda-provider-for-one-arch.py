"""Shrinks ONNX Runtime's CUDA provider library for one GPU architecture, for moving it to a
machine that only takes small transfers (how the H200 checks of BENCHMARKS.md, sixth session,
carried the `onnxruntime-gpu` 1.30 wheel's 272 MB `libonnxruntime_providers_cuda.so`).

Every CUDA kernel image (cubin) in the library's `.nv_fatbin` section for another architecture
is overwritten with zeros; headers, sizes and offsets stay as they are, so the file has the same
layout and compresses to a fraction (272 MB -> 50 MB with xz for sm_90: H100/H200). The CUDA
driver picks the image for its GPU's architecture and never reads the others (loading is lazy
since CUDA 12.2). Run `list` first: the architecture you keep must have an image (kind `elf`);
a library with only PTX for it would need that kept instead. Not for distribution: a zeroed
image on another GPU fails at its first kernel.

    python3 scripts/cuda-provider-for-one-arch.py list LIB
    python3 scripts/cuda-provider-for-one-arch.py keep LIB SM OUT     (e.g. keep ... 90 out.so)
"""
import collections
import struct
import sys

FATBIN_MAGIC = 0xBA55ED50


def main():
    mode, path = sys.argv[1], sys.argv[2]
    data = bytearray(open(path, "rb").read())
    # ELF64: section headers, their names, the .nv_fatbin section.
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sh = lambda i: struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    names = sh(shstrndx)[4]
    name = lambda off: data[names + off:data.index(b"\0", names + off)].decode()
    sections = {name(sh(i)[0]): sh(i) for i in range(shnum)}
    fatbin = sections[".nv_fatbin"]
    pos, end = fatbin[4], fatbin[4] + fatbin[5]
    keep = int(sys.argv[3]) if mode == "keep" else None
    sizes, zeroed = collections.Counter(), 0
    while pos < end:
        magic, _version, header, size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-aligned
            continue
        entry, stop = pos + header, pos + header + size
        while entry < stop:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch, = struct.unpack_from("<I", data, entry + 28)
            sizes[("ptx" if kind == 1 else "elf", arch)] += payload
            if keep is not None and not (kind == 2 and arch == keep):
                data[entry + entry_header:entry + entry_header + payload] = bytes(payload)
                zeroed += payload
            entry += entry_header + payload
        pos = stop
    for (kind, arch), n in sorted(sizes.items()):
        print(f"{kind} sm_{arch}: {n} bytes")
    if keep is not None:
        open(sys.argv[4], "wb").write(data)
        print(f"zeroed {zeroed} bytes; kept sm_{keep}")


main()
