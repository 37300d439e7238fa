#!/usr/bin/env python3
"""Raw yuv420p video on stdout, in real time, whose every frame carries the wall-clock time it
was made: 48 black/white blocks (40 bits of Unix milliseconds + an 8-bit checksum) across the
top of the picture. The latency page reads them back from each displayed frame.

Usage (the picture must be at least 384x72): clock_source.py WIDTH HEIGHT FPS SECONDS | ffmpeg -f rawvideo -pix_fmt yuv420p -s WxH -r FPS -i - ...
"""
import sys
import time

BLOCK = 24
COLS = 16
ROWS = 3


def frame(width, height, ms):
    bits = [(ms >> (39 - i)) & 1 for i in range(40)]
    check = sum((ms >> (8 * k)) & 0xFF for k in range(5)) & 0xFF
    bits += [(check >> (7 - i)) & 1 for i in range(8)]
    y = bytearray(b"\x80" * (width * height))
    for i, bit in enumerate(bits):
        r, c = divmod(i, COLS)
        val = 235 if bit else 16
        row = bytes([val]) * BLOCK
        for yy in range(r * BLOCK, (r + 1) * BLOCK):
            off = yy * width + c * BLOCK
            y[off:off + BLOCK] = row
    chroma = b"\x80" * ((width // 2) * (height // 2))
    return bytes(y) + chroma + chroma


def main():
    width, height, fps, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    out = sys.stdout.buffer
    start = time.time()
    n = 0
    while n < seconds * fps:
        due = start + n / fps
        now = time.time()
        if due > now:
            time.sleep(due - now)
        out.write(frame(width, height, int(time.time() * 1000)))
        out.flush()
        n += 1


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        pass
