/* The floor: the least a durable append can do. Appends COUNT lines of about 200 bytes to FILE,
 * each with its own write(2) and fsync(2) (fdatasync(2) with -d), in one process.
 * COUNT=1 run once per event is the per-process floor; a large COUNT is the in-process floor.
 * Usage: floor [-d] FILE [COUNT]   (exit 0 on success, 1 with a message on any error) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int data_only = 0;
    int a = 1;
    if (a < argc && strcmp(argv[a], "-d") == 0) { data_only = 1; a++; }
    if (a >= argc) { fprintf(stderr, "usage: floor [-d] FILE [COUNT]\n"); return 1; }
    const char *path = argv[a];
    long count = a + 1 < argc ? atol(argv[a + 1]) : 1;
    char line[256];
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) { fprintf(stderr, "floor: open %s: %s\n", path, strerror(errno)); return 1; }
    for (long i = 0; i < count; i++) {
        int n = snprintf(line, sizeof line,
            "{\"seq\":%ld,\"doc\":\"order:1\",\"data\":{\"note\":\"%.*s\",\"n\":%ld}}\n", i, 140,
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i);
        if (write(fd, line, (size_t)n) != n) { fprintf(stderr, "floor: write: %s\n", strerror(errno)); return 1; }
        if ((data_only ? fdatasync(fd) : fsync(fd)) != 0) { fprintf(stderr, "floor: fsync: %s\n", strerror(errno)); return 1; }
    }
    if (close(fd) != 0) { fprintf(stderr, "floor: close: %s\n", strerror(errno)); return 1; }
    return 0;
}
