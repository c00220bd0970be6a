#!/usr/bin/env python3
"""A consumer that knows nothing of schemas or migrations: it folds a stream's events with a
plain RFC 6902 implementation (standard library only) and prints the final state as JSON.

Usage: replay_patches.py STREAM_FILE
"""
import json
import sys


def tokens(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"bad pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def resolve(doc, toks):
    for t in toks:
        if isinstance(doc, list):
            doc = doc[int(t)]
        else:
            doc = doc[t]
    return doc


def add(doc, path, value):
    toks = tokens(path)
    if not toks:
        return value
    parent = resolve(doc, toks[:-1])
    last = toks[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            index = int(last)
            if index > len(parent):
                raise IndexError(path)
            parent.insert(index, value)
    else:
        parent[last] = value
    return doc


def remove(doc, path):
    toks = tokens(path)
    parent = resolve(doc, toks[:-1])
    last = toks[-1]
    if isinstance(parent, list):
        return doc, parent.pop(int(last))
    return doc, parent.pop(last)


def apply(doc, patch):
    for op in patch:
        kind = op["op"]
        if kind == "add":
            doc = add(doc, op["path"], op["value"])
        elif kind == "remove":
            doc, _ = remove(doc, op["path"])
        elif kind == "replace":
            doc, _ = remove(doc, op["path"]) if op["path"] else (doc, None)
            doc = add(doc, op["path"], op["value"])
        elif kind == "move":
            doc, value = remove(doc, op["from"])
            doc = add(doc, op["path"], value)
        elif kind == "copy":
            doc = add(doc, op["path"], json.loads(json.dumps(resolve(doc, tokens(op["from"])))))
        elif kind == "test":
            if resolve(doc, tokens(op["path"])) != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        else:
            raise ValueError(f"unknown op {kind!r}")
    return doc


def main():
    state = None
    deleted = True
    with open(sys.argv[1], encoding="utf-8") as stream:
        for line in stream:
            if not line.endswith("\n"):
                break  # a torn tail: never acknowledged
            event = json.loads(line)
            if event["type"] == "create":
                state, deleted = event["data"], False
            elif event["type"] in ("update", "migrate"):
                state = apply(state, event["data"])
            elif event["type"] == "delete":
                deleted = True
    json.dump({"deleted": deleted, "state": state}, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
