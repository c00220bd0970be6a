#!/usr/bin/env python3
"""Input generator for bench/run (standard library only).

  gen.py batch N DOCS [--offset O] [--prefix TYPE]   request lines for `eventdir append --batch`
  gen.py sql   N DOCS [--offset O] [--prefix TYPE] [--txn one|each]   the same events as SQL
  gen.py schema                                        the SQLite schema (WAL, table)

Event number i (counting from O) goes to document TYPE:(i % DOCS): the first event of a
document (i < DOCS) creates it with an object of about 200 bytes, later ones update it with a
JSON Patch of about 200 bytes. Output is deterministic.
"""
import hashlib
import json
import sys

PAD = "abcdefghijklmnopqrstuvwxyz0123456789" * 8


def create(i):
    # about 200 bytes of JSON
    return {"customer": "c-%07d" % i, "status": "open", "n": i,
            "items": [{"sku": "A-%d" % (i % 97), "qty": 1 + i % 5}],
            "note": PAD[i % 36:i % 36 + 96]}


def update(i):
    return [{"op": "replace", "path": "/n", "value": i},
            {"op": "replace", "path": "/status", "value": ("open", "paid", "shipped")[i % 3]},
            {"op": "replace", "path": "/note", "value": PAD[i % 36:i % 36 + 88]}]


def events(n, docs, offset, prefix):
    for i in range(offset, offset + n):
        d = i % docs
        seq = i // docs
        data = create(i) if i < docs else update(i)
        yield "%s:%d" % (prefix, d), seq, json.dumps(data, separators=(",", ":"))


SCHEMA = """PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE events (stream TEXT, seq INTEGER, data TEXT, hash TEXT, PRIMARY KEY(stream, seq));
"""


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    mode = argv[0]
    if mode == "schema":
        sys.stdout.write(SCHEMA)
        return 0
    n, docs = int(argv[1]), int(argv[2])
    opts = dict(zip(argv[3::2], argv[4::2]))
    offset = int(opts.get("--offset", 0))
    prefix = opts.get("--prefix", "order")
    out = sys.stdout
    w = out.write
    if mode == "batch":
        for doc, _seq, data in events(n, docs, offset, prefix):
            key = "data"
            w('{"doc":"%s","%s":%s}\n' % (doc, key, data))
    elif mode == "sql":
        one = opts.get("--txn", "one") == "one"
        w("PRAGMA synchronous=FULL;\n")
        if one:
            w("BEGIN;\n")
        for doc, seq, data in events(n, docs, offset, prefix):
            h = hashlib.sha256(data.encode()).hexdigest()
            w("INSERT INTO events VALUES('%s',%d,'%s','%s');\n" % (doc, seq, data.replace("'", "''"), h))
        if one:
            w("COMMIT;\n")
    else:
        print("gen.py: unknown mode %r" % mode, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
