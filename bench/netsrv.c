/* Network servers for bench/bench_proxy.py, built static so they run in the busybox image (bind-mounted) and on
 * the host alike. Usage: netsrv SERVICE:PORT...   (one process per service)
 *   sink:P     TCP: read every connection to EOF, then close (throughput)
 *   echo:P     TCP: echo everything back, many connections at once (epoll)
 *   udpecho:P  UDP: send each datagram back to its sender
 *   udpsink:P  UDP: count datagrams; "RST" resets the count (answers "OK"), "END" answers the count
 * Busybox's nc has neither UDP nor a persistent echo without a fork per connection, hence this file. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int bound(int type, int port) {
    int fd = socket(AF_INET, type, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (type == SOCK_DGRAM) {
        int size = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(fd, 1024) < 0) { perror("listen"); exit(1); }
    return fd;
}

static void sink(int port) {
    static char buf[1 << 20];
    int lfd = bound(SOCK_STREAM, port);
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) continue;
        while (read(c, buf, sizeof buf) > 0) {}
        close(c);
    }
}

static void echo(int port) {
    static char buf[65536];
    int lfd = bound(SOCK_STREAM, port), ep = epoll_create1(0), one = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept(lfd, NULL, NULL);
                if (c < 0) continue;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); continue; }
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(fd, buf + off, r - off);
                if (w <= 0) break;
                off += w;
            }
        }
    }
}

static void udp(int port, int is_sink) {
    static char buf[65536];
    int fd = bound(SOCK_DGRAM, port);
    long count = 0;
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t r = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (r < 0) continue;
        if (!is_sink) { sendto(fd, buf, r, 0, (struct sockaddr *)&from, len); continue; }
        if (r == 3 && memcmp(buf, "RST", 3) == 0) {
            count = 0;
            sendto(fd, "OK", 2, 0, (struct sockaddr *)&from, len);
        } else if (r == 3 && memcmp(buf, "END", 3) == 0) {
            int n = snprintf(buf, sizeof buf, "%ld", count);
            sendto(fd, buf, n, 0, (struct sockaddr *)&from, len);
        } else {
            count++;
        }
    }
}

static void on_term(int sig) { (void)sig; _exit(0); }

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term); /* PID 1 in a container ignores SIGTERM unless it handles it */
    for (int i = 1; i < argc; i++) {
        char *colon = strchr(argv[i], ':');
        if (!colon) { fprintf(stderr, "bad service %s\n", argv[i]); return 2; }
        *colon = 0;
        int port = atoi(colon + 1);
        if (fork() == 0) {
            if (!strcmp(argv[i], "sink")) sink(port);
            else if (!strcmp(argv[i], "echo")) echo(port);
            else if (!strcmp(argv[i], "udpecho")) udp(port, 0);
            else if (!strcmp(argv[i], "udpsink")) udp(port, 1);
            return 2;
        }
    }
    while (wait(NULL) > 0) {}
    return 0;
}
