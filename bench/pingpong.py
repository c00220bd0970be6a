#!/usr/bin/env python3
"""One producer, one long-running writer, one request at a time.

  pingpong.py N COMMAND [ARG...]

Starts COMMAND (e.g. `eventdir append --batch`) with pipes, then N times: writes one request
line (the events of `gen.py batch N 1`: a create, then updates of document order:0), flushes,
and waits for the one result line before writing the next. Exits 1 if any result is an error
or the writer does not answer every request.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402


def main(argv):
    n = int(argv[0])
    cmd = argv[1:]
    lines = ['{"doc":"%s","data":%s}\n' % (doc, data) for doc, _seq, data in gen.events(n, 1, 0, "order")]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    w, r = p.stdin, p.stdout
    for i, line in enumerate(lines):
        w.write(line.encode())
        w.flush()
        result = r.readline()
        if not result:
            print("pingpong: the writer closed its output after %d results" % i, file=sys.stderr)
            return 1
        if result.startswith(b'{"error"'):
            print("pingpong: request %d refused: %s" % (i, result.decode().strip()), file=sys.stderr)
            return 1
    w.close()
    rest = r.read()
    code = p.wait()
    if rest.strip() or code != 0:
        print("pingpong: writer exited %d with extra output %r" % (code, rest[:200]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
