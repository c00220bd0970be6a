#!/usr/bin/env python3
"""bench/evict.py DIR...: drops the page cache of every regular file under each DIR.

A folder moved aside (see `aside` in bench/run) keeps its file pages cached, so the next run
writes into pages the kernel has to find afresh, while a command whose previous output was
deleted writes into the pages that deletion freed. In a virtual machine whose memory the host
backs on first touch, the first kind costs several times the second (dd of 594 MB: 1.5-1.9 s
against 0.4 s). Evicting what is set aside gives every command the same kind of page. The
files must be clean (run `sync` first): dirty pages are not dropped.
"""
import os
import sys

for top in sys.argv[1:]:
    for parent, _, names in os.walk(top):
        for name in names:
            path = os.path.join(parent, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
