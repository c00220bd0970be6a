#!/usr/bin/env python3
"""Independent verifier for eventdir folders (format version 1).

Written from FORMAT.md alone, with the Python 3 standard library only, so that it shares
no code (and no misreading of the code) with eventdir itself.

Usage: python3 verify_stream.py FOLDER

Checks every complete line of every stream under FOLDER/streams by the rules of
"Checking a line" in FORMAT.md and prints the folder digest (hex) as the last line of
stdout. Exit status:

  0  every stream passed; the last line of stdout is the digest
  1  some line failed; stdout holds one `FAIL <doc> seq <n>: <reason>` line per failed
     stream (the first failure of that stream), and no digest
  2  the folder cannot be verified at all (no manifest, unknown format version, usage)

Torn tails (bytes after the last newline) are ignored and reported on stderr; files under
streams/ that are not stream files of a valid document id are reported on stderr as
foreign and do not fail.
"""

import hashlib
import json
import os
import re
import sys
import unicodedata

FORMAT_VERSION = 1
DEFAULT_MAX_EVENT_BYTES = 16777216

MEMBERS = ("seq", "doc", "type", "timestamp", "event_id", "schema", "meta", "salt",
           "data_hash", "data", "hash")
TYPES = ("create", "update", "delete", "migrate")

# ASCII digits only: `\d` would also match other Unicode digits.
TIMESTAMP_RE = re.compile(
    r"\A([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.[0-9]{6}Z\Z")
UUID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
HEX32_RE = re.compile(r"\A[0-9a-f]{32}\Z")
HEX64_RE = re.compile(r"\A[0-9a-f]{64}\Z")
SEQ_TOKEN_RE = re.compile(r"\A(0|[1-9][0-9]*)\Z")

ZERO_HASH = bytes(32)


class LineError(Exception):
    """A complete line that fails a check: corruption."""


# --------------------------------------------------------------------------------------
# Document ids and file names


def forbidden_char(ch):
    """True for the characters a document id part must not contain."""
    cp = ord(ch)
    if unicodedata.category(ch) == "Cc":
        return True
    if 0x200B <= cp <= 0x200F or 0x2028 <= cp <= 0x202E or 0x2060 <= cp <= 0x2069:
        return True
    return cp == 0xFEFF


def valid_doc_id(doc):
    """The rules of "Document ids and file names" (the reserved `sys` type included)."""
    if ":" not in doc:
        return False
    typ, ident = doc.split(":", 1)
    if not typ or not ident:
        return False
    if len(typ.encode("utf-8")) > 64 or len(ident.encode("utf-8")) > 200:
        return False
    if any(forbidden_char(c) for c in doc):
        return False
    if len(encode_component(ident)) > 240:
        return False
    if typ == "sys":
        # `sys:schema:TYPE` is the only sys document, and TYPE must itself be a valid type.
        schema_of = ident[len("schema:"):]
        return (ident.startswith("schema:") and schema_of != "" and ":" not in schema_of
                and schema_of != "sys" and len(schema_of.encode("utf-8")) <= 64)
    return True


def encode_component(text):
    """The file-name encoding of one id part."""
    out = []
    for i, b in enumerate(text.encode("utf-8")):
        c = chr(b)
        if ("a" <= c <= "z") or ("0" <= c <= "9") or c in "_-" or (c == "." and i > 0):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def decode_component(name):
    """Reverses encode_component; None if `name` is not the encoding of any text."""
    raw = bytearray()
    i = 0
    while i < len(name):
        c = name[i]
        if c == "%":
            hx = name[i + 1:i + 3]
            if len(hx) != 2 or not all(h in "0123456789ABCDEF" for h in hx):
                return None
            raw.append(int(hx, 16))
            i += 3
        else:
            if ord(c) > 0x7F:
                return None
            raw.append(ord(c))
            i += 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Only the canonical encoding names a stream (e.g. `%61` for `a` does not).
    if encode_component(text) != name:
        return None
    return text


def shard(doc):
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:2]


def stream_relpath(doc):
    typ, ident = doc.split(":", 1)
    return os.path.join(encode_component(typ), shard(doc), encode_component(ident) + ".ndjson")


def doc_of_relpath(parts):
    """The document id a path (relative to streams/, as components) belongs to, or None."""
    if len(parts) != 3:
        return None
    typ_name, shard_name, file_name = parts
    if not file_name.endswith(".ndjson"):
        return None
    typ = decode_component(typ_name)
    ident = decode_component(file_name[:-len(".ndjson")])
    if typ is None or ident is None:
        return None
    doc = typ + ":" + ident
    if ":" in typ or not valid_doc_id(doc):
        return None
    if shard_name != shard(doc):
        return None
    return doc


# --------------------------------------------------------------------------------------
# JSON


def _no_constants(name):
    raise ValueError("not JSON: %s" % name)


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range: %s" % text)
    return value


def _pairs(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError("duplicate member name %s" % json.dumps(key, ensure_ascii=False))
        seen.add(key)
    return dict(pairs)


DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constants,
                           parse_float=_finite_float)


def check_unicode(value):
    """Rejects strings holding lone surrogates (valid JSON escapes, but not Unicode text)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise LineError("string with a lone surrogate escape")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def check_compact(text):
    """No JSON whitespace outside strings."""
    in_string = False
    escaped = False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in " \t\r\n":
            raise LineError("whitespace outside a string at character %d (not compact)" % i)


def decode_value(text, idx):
    try:
        return DECODER.raw_decode(text, idx)
    except (ValueError, RecursionError) as e:
        raise LineError("not JSON at character %d: %s" % (idx, e))


def walk_members(text):
    """Walks the top-level object member by member.

    Returns [(name, value, start, end)], where text[start:end] is the value's token."""
    if not text.startswith("{"):
        raise LineError("not a JSON object")
    members = []
    i = 1
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            if not text.startswith('"', i):
                raise LineError("expected a member name at character %d" % i)
            name, i = decode_value(text, i)
            if not text.startswith(":", i):
                raise LineError("expected ':' at character %d" % i)
            i += 1
            start = i
            value, i = decode_value(text, i)
            members.append((name, value, start, i))
            if text.startswith(",", i):
                i += 1
                continue
            if text.startswith("}", i):
                i += 1
                break
            raise LineError("expected ',' or '}' at character %d" % i)
    if i != len(text):
        raise LineError("bytes after the JSON object")
    return members


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------
# Checking a line


def valid_timestamp(ts):
    m = TIMESTAMP_RE.match(ts)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 59):
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return 1 <= day <= days


def check_line(raw, doc, n, prev_hash, prev_timestamp):
    """Checks line n (counting from 1; `raw` without its newline).

    Returns (hash bytes, timestamp) of the event; raises LineError on the first failure."""
    # 1. valid UTF-8 and JSON with exactly the members above
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LineError("not UTF-8 at byte %d" % e.start)
    check_compact(text)
    members = walk_members(text)
    names = [m[0] for m in members]
    seen = set()
    for name in names:
        if name in seen:
            raise LineError("duplicate member %s" % json.dumps(name, ensure_ascii=False))
        seen.add(name)
    for name in names:
        if name not in MEMBERS:
            raise LineError("unknown member %s" % json.dumps(name, ensure_ascii=False))
    for name in MEMBERS:
        if name not in seen:
            raise LineError("missing member %s" % name)
    if tuple(names) != MEMBERS:
        raise LineError("members out of order: %s" % ",".join(names))
    for _, value, _, _ in members:
        check_unicode(value)
    ev = {name: value for name, value, _, _ in members}
    tokens = {name: text[start:end] for name, _, start, end in members}
    if not is_int(ev["seq"]) or not SEQ_TOKEN_RE.match(tokens["seq"]):
        raise LineError("seq is not a non-negative integer: %s" % tokens["seq"])
    for name in ("doc", "type", "timestamp", "event_id", "salt", "data_hash", "hash"):
        if not isinstance(ev[name], str):
            raise LineError("%s is not a string" % name)
    if ev["type"] not in TYPES:
        raise LineError("unknown type %s" % json.dumps(ev["type"], ensure_ascii=False))
    if ev["schema"] is not None and not (is_int(ev["schema"]) and ev["schema"] >= 0):
        raise LineError("schema is neither null nor a seq: %s" % tokens["schema"])
    if ev["meta"] is not None and not isinstance(ev["meta"], dict):
        raise LineError("meta is neither an object nor null")
    if not HEX32_RE.match(ev["salt"]):
        raise LineError("salt is not 32 lower-case hex digits")
    if not HEX64_RE.match(ev["data_hash"]):
        raise LineError("data_hash is not 64 lower-case hex digits")
    if not HEX64_RE.match(ev["hash"]):
        raise LineError("hash is not 64 lower-case hex digits")

    # 2. doc is the stream's document
    if ev["doc"] != doc:
        raise LineError("doc is %s, not the stream's document"
                        % json.dumps(ev["doc"], ensure_ascii=False))
    # 3. seq is n - 1
    if ev["seq"] != n - 1:
        raise LineError("seq is %d, expected %d" % (ev["seq"], n - 1))
    # 4. timestamp has the stored form and is not earlier than the previous event's
    if not valid_timestamp(ev["timestamp"]):
        raise LineError("timestamp %s is not YYYY-MM-DDTHH:MM:SS.ffffffZ"
                        % json.dumps(ev["timestamp"], ensure_ascii=False))
    if prev_timestamp is not None and ev["timestamp"] < prev_timestamp:
        raise LineError("timestamp %s is earlier than the previous event's %s"
                        % (ev["timestamp"], prev_timestamp))
    # 5. event_id is a lower-case UUID
    if not UUID_RE.match(ev["event_id"]):
        raise LineError("event_id is not a lower-case UUID")
    # 6. data is an object for create, an array for update and migrate, null for delete
    data = ev["data"]
    if ev["type"] == "create" and not isinstance(data, dict):
        raise LineError("create data is not an object")
    if ev["type"] in ("update", "migrate") and not isinstance(data, list):
        raise LineError("%s data is not an array" % ev["type"])
    if ev["type"] == "delete" and data is not None:
        raise LineError("delete data is not null")
    # 7. data_hash matches
    _, _, d_start, d_end = members[MEMBERS.index("data")]
    e_bytes = text[:d_start].encode("utf-8")
    d_bytes = text[d_start:d_end].encode("utf-8")
    tail = raw[len(e_bytes) + len(d_bytes):]
    data_hash = hashlib.sha256(bytes.fromhex(ev["salt"]) + d_bytes).digest()
    if data_hash.hex() != ev["data_hash"]:
        raise LineError("data_hash does not match data")
    # 8. the line ends with the hash computed from the previous event's hash
    expected = hashlib.sha256(prev_hash + hashlib.sha256(e_bytes).digest() + data_hash).digest()
    if tail != b',"hash":"' + expected.hex().encode("ascii") + b'"}':
        raise LineError("hash does not match the chain (expected %s)" % expected.hex())
    return expected, ev["timestamp"]


# --------------------------------------------------------------------------------------
# Streams and the folder


def read_lines(path, max_event_bytes):
    """Yields (complete line without newline or None if over-long, None) for each line,
    then (None, torn tail length) once if the file ends without a newline."""
    with open(path, "rb") as f:
        while True:
            chunk = f.readline(max_event_bytes)
            if not chunk:
                return
            if chunk.endswith(b"\n"):
                yield chunk[:-1], None
                continue
            # No newline within max_event_bytes bytes: an over-long line, or a torn
            # tail (longer than max or not); read on to tell them apart without holding it.
            length = len(chunk)
            while not chunk.endswith(b"\n"):
                chunk = f.readline(1 << 20)
                if not chunk:
                    yield None, length
                    return
                length += len(chunk)
            yield None, None  # a complete line longer than max_event_bytes


def verify_stream(path, doc, max_event_bytes, out_fail, out_warn):
    """Returns (last seq, last hash hex) or None for a stream without events; False if failed."""
    prev_hash = ZERO_HASH
    prev_ts = None
    n = 0
    for line, torn in read_lines(path, max_event_bytes):
        if line is None and torn is not None:
            out_warn("torn tail: %s: %d bytes after the last newline of %s (ignored)"
                     % (doc, torn, path))
            break
        n += 1
        if line is None:
            out_fail("FAIL %s seq %d: line %d is longer than max_event_bytes (%d)"
                     % (doc, n - 1, n, max_event_bytes))
            return False
        try:
            prev_hash, prev_ts = check_line(line, doc, n, prev_hash, prev_ts)
        except LineError as e:
            out_fail("FAIL %s seq %d: line %d: %s" % (doc, n - 1, n, e))
            return False
    if n == 0:
        return None
    return n - 1, prev_hash.hex()


def load_manifest(folder):
    path = os.path.join(folder, "eventdir.json")
    try:
        with open(path, "rb") as f:
            manifest = DECODER.decode(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit("error: cannot read the manifest %s: %s" % (path, e))
    if not isinstance(manifest, dict) or manifest.get("format") != "eventdir":
        raise SystemExit("error: %s is not an eventdir manifest" % path)
    version = manifest.get("version")
    if not is_int(version) or version < 1:
        raise SystemExit("error: bad format version %r" % (version,))
    if version > FORMAT_VERSION:
        raise SystemExit("error: format version %d is newer than this verifier knows (%d)"
                         % (version, FORMAT_VERSION))
    max_event_bytes = manifest.get("max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
    if not is_int(max_event_bytes) or max_event_bytes < 1:
        raise SystemExit("error: bad max_event_bytes %r" % (max_event_bytes,))
    return manifest, max_event_bytes


def find_streams(streams_dir, out_warn):
    """{doc: path} for every stream file; everything else is reported as foreign."""
    found = {}
    for root, dirs, files in os.walk(streams_dir):
        dirs.sort()
        rel_root = os.path.relpath(root, streams_dir)
        rel_parts = [] if rel_root == "." else rel_root.split(os.sep)
        for name in sorted(files):
            path = os.path.join(root, name)
            parts = rel_parts + [name]
            doc = None
            if os.path.isfile(path) and not os.path.islink(path):
                doc = doc_of_relpath(parts)
            if doc is None:
                out_warn("foreign: %s" % os.path.join("streams", *parts))
            else:
                found[doc] = path
        if len(rel_parts) >= 2:
            # Below TYPE/SHARD/ only stream files belong: a directory there is foreign.
            for d in dirs:
                out_warn("foreign: %s/" % os.path.join("streams", *(rel_parts + [d])))
            dirs[:] = []
    return found


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: python3 verify_stream.py FOLDER\n")
        return 2
    folder = argv[1]
    try:
        _, max_event_bytes = load_manifest(folder)
    except SystemExit as e:
        sys.stderr.write("%s\n" % e)
        return 2
    failures = []

    def out_fail(msg):
        failures.append(msg)
        print(msg)

    def out_warn(msg):
        sys.stderr.write(msg + "\n")

    streams_dir = os.path.join(folder, "streams")
    streams = find_streams(streams_dir, out_warn) if os.path.isdir(streams_dir) else {}
    heads = []
    for doc in sorted(streams, key=lambda d: d.encode("utf-8")):
        result = verify_stream(streams[doc], doc, max_event_bytes, out_fail, out_warn)
        if result:
            heads.append((doc, result[0], result[1]))
    if failures:
        return 1
    digest = hashlib.sha256()
    for doc, seq, hx in heads:
        digest.update(doc.encode("utf-8") + b"\t" + str(seq).encode("ascii") + b"\t"
                      + hx.encode("ascii") + b"\n")
    sys.stderr.write("ok: %d streams with events\n" % len(heads))
    print(digest.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
