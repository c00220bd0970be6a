/* The least a writer answering scenario 2's producer can do: for each line of stdin, appends a
 * line of about the size of a stored event (585 bytes) to FILE with one write(2) and one
 * fdatasync(2), then writes that line to stdout as its answer. Driven by `pingpong`, it shows
 * what the one-request-in-flight protocol itself costs on top of the floor program: two
 * sleeps a request (for the request, for the journal commit) instead of one.
 * Usage: answer FILE   (exit 0 at the end of stdin, 1 with a message on any error) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LINE 585

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: answer FILE\n"); return 1; }
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) { fprintf(stderr, "answer: open %s: %s\n", argv[1], strerror(errno)); return 1; }
    char out[LINE];
    memset(out, 'x', sizeof out);
    memcpy(out, "{\"seq\":0}", 9);
    out[LINE - 1] = '\n';
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        if (write(fd, out, LINE) != LINE) { fprintf(stderr, "answer: write: %s\n", strerror(errno)); return 1; }
        if (fdatasync(fd) != 0) { fprintf(stderr, "answer: fdatasync: %s\n", strerror(errno)); return 1; }
        if (fwrite(out, 1, LINE, stdout) != LINE || fflush(stdout) != 0) {
            fprintf(stderr, "answer: write to stdout: %s\n", strerror(errno));
            return 1;
        }
    }
    return 0;
}
