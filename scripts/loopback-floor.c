// The fastest round trip this machine's loopback allows with one request in flight: a client thread writes 108
// bytes, a server thread (epoll, TCP_NODELAY) echoes them, nothing else is done. The transport's 1-in-flight
// benchmark crosses at least these two thread wake-ups, so it cannot beat this figure on the same machine.
//
//     gcc -O2 -pthread scripts/loopback-floor.c -o /tmp/loopback-floor && /tmp/loopback-floor
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ROUND_TRIPS = 20000, FRAME = 108 };

static int listener;

static int watch(int fd) {
    int one = 1, poller = epoll_create1(0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(poller, EPOLL_CTL_ADD, fd, &event);
    return poller;
}

static void *echo(void *unused) {
    (void)unused;
    int fd = accept(listener, 0, 0), poller = watch(fd);
    char buffer[4096];
    for (;;) {
        struct epoll_event event;
        epoll_wait(poller, &event, 1, -1);
        ssize_t count = read(fd, buffer, sizeof buffer);
        if (count <= 0 || write(fd, buffer, (size_t)count) != count) return 0;
    }
}

static double now(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec + (double)time.tv_nsec / 1e9;
}

int main(void) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&address, length) || listen(listener, 1)) return perror("listen"), 1;
    getsockname(listener, (struct sockaddr *)&address, &length);
    pthread_t server;
    pthread_create(&server, 0, echo, 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&address, length)) return perror("connect"), 1;
    int poller = watch(fd);
    char frame[4096] = {0};
    for (int round = 0; round < 5; round++) {
        double start = now();
        for (int trip = 0; trip < ROUND_TRIPS; trip++) {
            struct epoll_event event;
            if (write(fd, frame, FRAME) != FRAME) return perror("write"), 1;
            for (ssize_t echoed = 0; echoed < FRAME;) {
                if (epoll_wait(poller, &event, 1, -1) < 0) return perror("epoll_wait"), 1;
                ssize_t count = read(fd, frame, sizeof frame);
                if (count <= 0) return perror("read"), 1;
                echoed += count;
            }
        }
        double seconds = now() - start;
        printf("%.0f round trips/s (%.1f us each)\n", ROUND_TRIPS / seconds, seconds / ROUND_TRIPS * 1e6);
    }
    return 0;
}
