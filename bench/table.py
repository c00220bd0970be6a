#!/usr/bin/env python3
"""Turns the raw results of bench/run (hyperfine JSON exports, facts, failures) into markdown.

  table.py RESULTS_DIR

Every time is hyperfine's median (or one /usr/bin/time run where peak RSS is wanted); every
ratio compares numbers taken in the same run.
"""
import glob
import json
import os
import statistics
import sys

RES = sys.argv[1] if len(sys.argv) > 1 else "."


def load_facts():
    facts = {}
    path = os.path.join(RES, "facts")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("\t")
                facts[key] = value
    return facts


def load_failures():
    path = os.path.join(RES, "failures")
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                out.append((parts + ["", "", ""])[:3])
    return out


F = load_facts()
FAILURES = load_failures()
FAILED = {name for name, _, _ in FAILURES}


def median(name):
    """The median in seconds over every timed run of every round of NAME (hyperfine JSON
    exports NAME.rI.json), or None when the benchmark failed or did not run."""
    times = []
    for f in sorted(glob.glob(os.path.join(RES, glob.escape(name) + ".r*.json"))):
        with open(f) as fh:
            times.extend(json.load(fh)["results"][0]["times"])
    if not times or os.path.exists(os.path.join(RES, name + ".failed")):
        return None
    return statistics.median(times)


def num(key):
    v = F.get(key)
    return float(v) if v not in (None, "") else None


def ms(s):
    return "FAIL" if s is None else "%.2f ms" % (s * 1e3)


def secs(s):
    if s is None:
        return "FAIL"
    return "%.2f s" % s if s >= 0.1 else "%.1f ms" % (s * 1e3)


def rate(n, s, unit="ev/s"):
    if s is None or n is None:
        return "FAIL"
    r = n / s
    if r >= 1e6:
        return "%.2fM %s" % (r / 1e6, unit)
    if r >= 1e4:
        return "%.0fk %s" % (r / 1e3, unit)
    if r >= 1e3:
        return "%.1fk %s" % (r / 1e3, unit)
    return "%.0f %s" % (r, unit)


def mbs(nbytes, s):
    return "FAIL" if s is None or nbytes is None else "%.0f MB/s" % (nbytes / s / 1e6)


def mb(kb):
    return "FAIL" if kb is None else "%.1f MB" % (kb * 1024 / 1e6)


def verdict(*conds):
    if any(c is None for c in conds):
        return "FAIL"
    return "yes" if all(conds) else "**no**"


def div(a, b):
    return None if a is None or b is None or b == 0 else a / b


def k(n):
    n = int(n)
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


rows = []


def row(scenario, eventdir, alternative, floor, ratio, target, met):
    rows.append((scenario, eventdir, alternative, floor, ratio, target, met))


def fmt_ratio(x, fmt="%.2fx"):
    return "—" if x is None else fmt % x


# 1. one process per event
e, fl, sq = median("s1_eventdir"), median("s1_floor"), median("s1_sqlite")
r_fl, r_sq = div(e, fl), div(e, sq)
row("1. one `append` process per event (shell loop)",
    ms(e), "sqlite3 shell, 1 INSERT: " + ms(sq), "C write+fsync: " + ms(fl),
    "%s floor; %s sqlite3" % (fmt_ratio(r_fl), fmt_ratio(r_sq)),
    "≤1.5x floor and < sqlite3", verdict(r_fl is not None and r_fl <= 1.5, r_sq is not None and r_sq < 1))

# 2. one writer, one request in flight
n2 = num("N2")
e, fl, sq = median("s2_eventdir"), median("s2_floor"), median("s2_sqlite")
row("2. `append --batch` in one process, 1 request in flight (N=%s)" % k(n2),
    rate(n2, e), "sqlite3, 1 INSERT per txn: " + rate(n2, sq), "C write+fsync loop: " + rate(n2, fl),
    "%s of floor; %s sqlite3" % ("—" if div(fl, e) is None else "%.0f%%" % (100 * fl / e),
                                  fmt_ratio(div(sq, e))),
    "≥80% of floor, > sqlite3",
    verdict(None if e is None or fl is None else fl / e >= 0.8, None if e is None or sq is None else sq / e > 1))

# 3. batch, one document
n3 = num("N3")
e, sq, fl = median("s3_eventdir"), median("s3_sqlite"), median("s3_floor")
ev_rate = div(n3, e)
row("3. `append --batch` from stdin, %s events to 1 document" % k(n3),
    rate(n3, e), "sqlite3, 1 txn: " + rate(n3, sq),
    "dd same %s MB + fsync: %s" % ("?" if num("s3_bytes") is None else "%.0f" % (num("s3_bytes") / 1e6), rate(n3, fl)),
    "%s sqlite3" % fmt_ratio(div(sq, e)),
    "≥400k ev/s", verdict(None if ev_rate is None else ev_rate >= 400000))

# 4. batch, many documents
n4 = num("N4")
for docs, target in (("10000", 200000), ("1000", None)):
    e, sq, fl = median("s4_%s_eventdir" % docs), median("s4_%s_sqlite" % docs), median("s4_%s_floor" % docs)
    ev_rate = div(n4, e)
    b = num("s4_%s_bytes" % docs)
    row("4. `append --batch`, %s events over %s documents" % (k(n4), k(docs)),
        rate(n4, e), "sqlite3, 1 txn, %s streams: %s" % (k(docs), rate(n4, sq)),
        "dd same %s MB + fsync: %s" % ("?" if b is None else "%.0f" % (b / 1e6), rate(n4, fl)),
        "%s sqlite3" % fmt_ratio(div(sq, e)),
        "≥200k ev/s" if target else "— (same target)",
        verdict(None if ev_rate is None else ev_rate >= 200000))

# 5. replay
e, sq, fl = median("s5_replay"), median("s5_sqlite"), median("s5_floor")
ev_rate = div(n3, e)
row("5. `replay` of 1 document of %s events" % k(n3),
    rate(n3, e), "sqlite3 SELECT of its rows: " + rate(n3, sq), "cat of its file: " + rate(n3, fl),
    "%s sqlite3" % fmt_ratio(div(sq, e)),
    "≥1.5M ev/s", verdict(None if ev_rate is None else ev_rate >= 1500000))
long_kb, short_kb = num("s5_rss_long_kb"), num("s5_rss_short_kb")
n5s = num("N5S")
short = median("s5_replay_short")
growth = div(long_kb, short_kb)
row("5b. `replay` peak RSS, %s vs %s events" % (k(n3), k(n5s)),
    mb(long_kb) + " (%s ev)" % k(n3), mb(short_kb) + " (%s ev, %s)" % (k(n5s), rate(n5s, short)), "—",
    "%s" % fmt_ratio(growth), "memory flat (≤1.2x)", verdict(None if growth is None else growth <= 1.2))
e, sq, fl = median("s5_log"), median("s5_sqlite"), median("s5_floor")
row("5c. `log` of 1 document of %s events (its stored lines)" % k(n3),
    rate(n3, e), "sqlite3 SELECT of its rows: " + rate(n3, sq), "cat of its file: " + rate(n3, fl),
    "%s sqlite3" % fmt_ratio(div(sq, e)), "— (no target)", "—")

# 6. verify
b6 = num("s6_bytes")
e, op, cat = median("s6_verify"), median("s6_openssl"), median("s6_cat")
r = div(op, e)
row("6. `verify`, %s events in 10k streams (%s MB)" % (k(n4), "?" if b6 is None else "%.0f" % (b6 / 1e6)),
    mbs(b6, e), "cat \\| openssl dgst -sha256: " + mbs(b6, op), "cat > /dev/null: " + mbs(b6, cat),
    "%s openssl" % fmt_ratio(r),
    "≥450 MB/s and ≥0.5x openssl",
    verdict(None if e is None else b6 / e / 1e6 >= 450, None if r is None else r >= 0.5))

# 7. get
e, cold, sq, fl = median("s7_get"), median("s7_get_cold"), median("s7_sqlite"), median("s7_floor")
row("7. `get`, document of %s events (snapshot warm)" % k(n3),
    ms(e), "sqlite3 SELECT last row: " + ms(sq), "tail -n 1 of its file: " + ms(fl),
    "%s sqlite3" % fmt_ratio(div(e, sq)), "< 5 ms", verdict(None if e is None else e < 0.005))
row("7b. `get`, same, cache/ removed before each run",
    ms(cold), "sqlite3 SELECT last row: " + ms(sq), "tail -n 1 of its file: " + ms(fl),
    "%s sqlite3" % fmt_ratio(div(cold, sq)), "< 5 ms", verdict(None if cold is None else cold < 0.005))

# 8. at
sq = median("s8_sqlite")
for name, what in (("s8_at_seq", "--seq %s" % k(num("s8_half") or 0)), ("s8_at_time", "--time (middle)")):
    e = median(name)
    row("8. `at %s`, document of %s events" % (what, k(n3)),
        ms(e), "sqlite3 SELECT row at seq N/2: " + ms(sq), "—",
        "%s sqlite3" % fmt_ratio(div(e, sq)), "< 20 ms", verdict(None if e is None else e < 0.020))

# 9. clone
b9 = num("s9_bytes")
e, cp, cps, inc = median("s9_clone"), median("s9_cp"), median("s9_cp_sync"), median("s9_incremental")
r = div(e, cp)
row("9. `clone`, 10k streams (%s MB)" % ("?" if b9 is None else "%.0f" % (b9 / 1e6)),
    secs(e), "cp -a: " + secs(cp), "cp -a && sync -f: " + secs(cps),
    "%s cp -a; %s cp -a+sync" % (fmt_ratio(r), fmt_ratio(div(e, cps))),
    "≤1.5x cp -a", verdict(None if r is None else r <= 1.5))
copied = ""
path = os.path.join(RES, "s9_incremental_summary.json")
if os.path.exists(path) and os.path.getsize(path):
    try:
        s = json.load(open(path))
        copied = " (copied %d of %d events)" % (s["copied_events"], s["events"])
    except (ValueError, KeyError):
        pass
r = div(inc, e)
row("9b. incremental re-clone after +1% events" + copied,
    secs(inc), "full clone: " + secs(e), "—",
    "—" if r is None else "%.0f%% of full" % (100 * r), "≤10% of full clone",
    verdict(None if r is None else r <= 0.10))

# 10. many documents
m, ms_ = num("M10"), num("M10S")
for cmd in ("ls", "verify", "export", "clone"):
    big_s, big_kb = num("s10_%d_%s_s" % (m, cmd)), num("s10_%d_%s_kb" % (m, cmd))
    sm_s, sm_kb = num("s10_%d_%s_s" % (ms_, cmd)), num("s10_%d_%s_kb" % (ms_, cmd))
    per_doc = None if big_kb is None or sm_kb is None else (big_kb - sm_kb) * 1024 / (m - ms_)

    def cell(s, kb, n):
        return "FAIL" if s is None else "%s, peak %s (%s docs)" % (secs(s), mb(kb), k(n))

    row("10. `%s`, many documents" % cmd,
        cell(big_s, big_kb, m), cell(sm_s, sm_kb, ms_), "—",
        "—" if per_doc is None else "%.0f B/doc" % per_doc,
        "RSS/doc a small constant (≤1 KiB)", verdict(None if per_doc is None else per_doc <= 1024))

# 11. export, apply
n11, b11 = num("s11_events"), num("s11_bytes")
e, sq, cat = median("s11_export"), median("s11_dump"), median("s6_cat")
row("11. `export`, %s events in 10k streams" % k(n4),
    rate(n11, e), "sqlite3 .dump: " + rate(n4, sq), "cat of the stream files: " + rate(n11, cat),
    "%s sqlite3" % fmt_ratio(div(div(n11, e), div(n4, sq))), "— (no target)", "—")
e, sq, fl = median("s11_apply"), median("s11_restore"), median("s11_floor")
row("11b. `apply` of that export (%s MB) into a new replica" % ("?" if b11 is None else "%.0f" % (b11 / 1e6)),
    rate(n11, e), "sqlite3 restoring its .dump (WAL, FULL, 1 txn): " + rate(n4, sq),
    "dd same bytes + fsync: " + rate(n11, fl),
    "%s sqlite3" % fmt_ratio(div(div(n11, e), div(n4, sq))), "— (no target)", "—")

# 12. migrate
e, sq = median("s12_migrate"), median("s12_sqlite")
row("12. `migrate` of 10k documents after a schema change (%s events folded, one `migrate` event each)" % k(n4),
    rate(10000, e, "docs/s"), "sqlite3, 1 INSERT per stream in 1 txn: " + rate(10000, sq, "docs/s"), "—",
    "%s sqlite3" % fmt_ratio(div(sq, e)), "— (no target)", "—")


def machine():
    lines = [
        "- mode: **%s** (`bench/run%s`), %s s wall" % (F.get("mode"), " --quick" if F.get("mode") == "quick" else "", F.get("seconds", "?")),
        "- machine: %s cores (`nproc`), %s, %s RAM, data on %s, Linux %s" % (
            F.get("nproc"), F.get("cpu"), F.get("mem"), F.get("fs"), F.get("kernel")),
        "- load average at start / end: %s / %s (other processes may share the machine; compare ratios)" % (
            F.get("loadavg"), F.get("loadavg_end", "?")),
        "- file system: %s; waited %s s before scenario 4 for the last run's deletions to age (see "
        "settle in bench/run); the run took %s MB of disk at most" % (
            F.get("journal", "?"), F.get("settle_wait", "0"), F.get("disk_mb", "?")),
        "- eventdir %s, built with `%s`; %s" % (F.get("commit"), F.get("build", "cargo build --release"), F.get("versions")),
        "- N: scenario 2: %s; 3, 5, 7, 8: %s (5b also %s); 4, 6, 9, 11, 12: %s; 10: %s and %s documents" % tuple(
            k(F.get(x, 0)) for x in ("N2", "N3", "N5S", "N4", "M10", "M10S")),
        "- timed runs per command (medians over all of them): 1: %s in %s rounds; 2: 3; 3: %s; 4: 1; "
        "5, 6, 11: %s; 7, 8: %s in 3 rounds; 7b: 3; 9: %s; 10: 1 (`/usr/bin/time`); 11b, 12: as 3. The commands a row "
        "compares run interleaved, round by round" % (tuple(
            F.get(x, "?") for x in ("RUNS_PROC", "ROUNDS_PROC", "ROUNDS_BIG", "RUNS_READ")) + (
            str(3 * int(F.get("RUNS_READ", 0))), F.get("RUNS9", "?"))),
    ]
    return "\n".join(lines)


out = ["# eventdir benchmark results", "", machine(), "",
       "| scenario | eventdir | alternative | floor | ratio | target | met |",
       "| --- | --- | --- | --- | --- | --- | --- |"]
for r in rows:
    out.append("| " + " | ".join(str(c) for c in r) + " |")
out.append("")
notes = []
st_e, st_t = median("s1_start_eventdir"), median("s1_start_true")
if st_e is not None and st_t is not None:
    notes.append("process start alone (scenario 1's overhead): `eventdir --version` %s, `/bin/true` %s"
                 % (ms(st_e), ms(st_t)))
o = median("s6_openssl_file")
if o is not None and num("s3_bytes"):
    notes.append("SHA-256 speed of this CPU, `openssl dgst -sha256` reading one %.0f MB file itself "
                 "(no cat, no pipe): %s (one core)" % (num("s3_bytes") / 1e6, mbs(num("s3_bytes"), o)))
h = median("s2_harness")
if h is not None:
    notes.append("scenario 2's producer alone (same round trips against `cat`): %s" % rate(n2, h))
a, e2 = median("s2_answer"), median("s2_eventdir")
if a is not None:
    share = "" if e2 is None else "; eventdir reaches %.0f%% of it" % (100 * a / e2)
    notes.append("scenario 2's protocol floor (the same producer against `bench/answer.c`, which appends "
                 "and fdatasyncs before each answer): %s%s" % (rate(n2, a), share))
if notes:
    out.append("Diagnostics measured in the same run:")
    out.append("")
    out.extend("- " + n for n in notes)
    out.append("")
# every store holds what it was given
checks = []


def check(what, got, want):
    if got is None or want is None:
        return
    ok = str(got).strip() == str(want).strip()
    checks.append("%s: %s%s" % (what, got, "" if ok else " — **expected %s**" % want))


check("1: eventdir events after the runs (seq of the last) = sqlite3 rows", F.get("s1_eventdir_events"), F.get("s1_sqlite_rows"))
check("2: eventdir events", F.get("s2_eventdir_events"), F.get("N2"))
check("2: sqlite3 rows", F.get("s2_sqlite_rows"), F.get("N2"))
check("3: eventdir events", F.get("s3_events"), F.get("N3"))
check("3: sqlite3 rows", F.get("s3_sqlite_rows"), F.get("N3"))
for docs in ("10000", "1000"):
    check("4 (%s documents): eventdir events" % docs, F.get("s4_%s_eventdir_events" % docs), F.get("N4"))
    check("4 (%s documents): sqlite3 rows" % docs, F.get("s4_%s_sqlite_rows" % docs), F.get("N4"))
check("11: replica events", F.get("s11_replica_events"), F.get("s11_events"))
check("11: restored sqlite3 rows", F.get("s11_restored_rows"), F.get("N4"))
check("12: eventdir events after migrate (with the schema's)", F.get("s12_events"), F.get("s12_expected_events"))
check("12: sqlite3 rows after its inserts", F.get("s12_sqlite_rows"), F.get("s12_expected"))
for size in ("M10S", "M10"):
    n = F.get(size)
    if n is not None:
        check("10 (%s documents): verify says" % k(n), F.get("s10_%s_verify_report" % n), "ok (%s streams, %s events)" % (n, n))
if checks:
    out.append("Checks (what each store holds after its last timed run):")
    out.append("")
    out.extend("- " + c for c in checks)
    out.append("")
if FAILURES:
    out.append("Failures (exact command, first lines of its message):")
    out.append("")
    for name, cmd, msg in FAILURES:
        out.append("- `%s`: `%s` — %s" % (name, cmd, msg.strip()))
    out.append("")
print("\n".join(out))
