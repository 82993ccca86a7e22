/*
 * maxrss: runs a command and writes its peak resident set size (ru_maxrss, KiB) to a file.
 *
 * Why not Python's wait4: a child forked (or vforked) from Python carries Python's resident pages until it
 * calls execve, and the kernel folds that high-water mark into the child's ru_maxrss, so every VMM would
 * report at least Python's ~17 MiB. Spawned from this small program, the floor is this program's own
 * pages (bench/run.sh reports it by measuring /bin/true).
 *
 * usage: maxrss OUTFILE COMMAND [ARG...]    exit status: the command's (128 + signal if it was killed)
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: maxrss OUTFILE COMMAND [ARG...]\n");
        return 2;
    }
    pid_t pid;
    int err = posix_spawnp(&pid, argv[2], NULL, NULL, &argv[2], environ);
    if (err != 0) {
        fprintf(stderr, "maxrss: %s: %s\n", argv[2], strerror(err));
        return 127;
    }
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("maxrss: wait4");
        return 1;
    }
    FILE *out = fopen(argv[1], "w");
    if (!out || fprintf(out, "%ld\n", usage.ru_maxrss) < 0 || fclose(out) != 0) {
        perror("maxrss: write result");
        return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
