/* One producer, one long-running writer, one request at a time.
 *
 *   pingpong REQUESTS COMMAND [ARG...]
 *
 * Starts COMMAND (e.g. `eventdir append --batch`) with pipes, then for each line of the file
 * REQUESTS (e.g. the output of `gen.py batch N 1`): writes the line, and waits for the one
 * result line before writing the next. Exits 1 if any result is an error (starts with
 * `{"error"`), or the writer does not answer every request or exits non-zero.
 * Written in C so that the producer's own round trip (about 20 us against `cat`) is small next
 * to the durable write it waits for. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write to the writer");
        }
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: pingpong REQUESTS COMMAND [ARG...]\n");
        return 1;
    }
    FILE *requests = fopen(argv[1], "r");
    if (!requests) die(argv[1]);
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child)) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[0]); close(to_child[1]); close(from_child[0]); close(from_child[1]);
        execvp(argv[2], argv + 2);
        die(argv[2]);
    }
    close(to_child[0]);
    close(from_child[1]);

    /* Results are read into `buf`; `have` bytes of it are not yet consumed. */
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    char *line = NULL;
    size_t line_cap = 0;
    long answered = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, requests)) > 0) {
        write_all(to_child[1], line, (size_t)len);
        char *nl;
        while (!(nl = memchr(buf, '\n', have))) {
            if (have == cap) { fprintf(stderr, "pingpong: a result line over %zu bytes\n", cap); return 1; }
            ssize_t r = read(from_child[0], buf + have, cap - have);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) die("read from the writer");
            if (r == 0) {
                fprintf(stderr, "pingpong: the writer closed its output after %ld results\n", answered);
                return 1;
            }
            have += (size_t)r;
        }
        if (strncmp(buf, "{\"error\"", 8) == 0) {
            fprintf(stderr, "pingpong: request %ld refused: %.*s\n", answered, (int)(nl - buf), buf);
            return 1;
        }
        answered++;
        size_t used = (size_t)(nl - buf) + 1;
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    close(to_child[1]);
    ssize_t r;
    while ((r = read(from_child[0], buf, cap)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read from the writer");
        have += (size_t)r;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (have > 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "pingpong: the writer exited with status %d and %zu bytes of extra output\n",
                status, have);
        return 1;
    }
    return 0;
}
