/*
 * blast: blocked-traffic generator for bench/events.ts and the burst test.
 *
 *   blast udp ADDR PORT COUNT RATE [LOCALPORT]   COUNT datagrams from one socket
 *   blast tcp ADDR PORT COUNT RATE               COUNT connect() attempts, a new socket each
 *   blast forktcp|forkudp ADDR PORT COUNT RATE   COUNT one-shot processes: each attempt is made
 *                                                by a new child that makes it once and exits
 *
 * RATE is attempts per second (0: as fast as possible), paced in 1 ms steps.
 * Errors (EPERM from a rejected send, ECONNREFUSED from a TCP reset) are the
 * point and are only counted. Prints one JSON object:
 *   {"sent":N,"errors":E,"seconds":S}
 * A datagram counts as sent when sendto() was called: a firewall drop inside
 * the kernel still passed the output hook once, which is what is measured.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "sockaddr.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: blast udp|tcp ADDR PORT COUNT RATE [LOCALPORT]\n");
    return 2;
  }
  int fork_each = strncmp(argv[1], "fork", 4) == 0;
  int tcp = strcmp(argv[1] + (fork_each ? 4 : 0), "tcp") == 0;
  /* Children are reaped by the kernel: a one-shot process leaves nothing behind. */
  if (fork_each) signal(SIGCHLD, SIG_IGN);
  long count = atol(argv[4]);
  double rate = atof(argv[5]);
  int lport = argc > 6 ? atoi(argv[6]) : 0;
  struct sockaddr_storage ss;
  socklen_t sslen;
  int family = parse_sockaddr(argv[2], atoi(argv[3]), &ss, &sslen);
  if (family < 0) {
    fprintf(stderr, "blast: not an address: %s\n", argv[2]);
    return 2;
  }
  int ufd = -1;
  if (!tcp && !fork_each) {
    ufd = socket(family, SOCK_DGRAM, 0);
    if (ufd < 0) { perror("socket"); return 1; }
    if (lport > 0) {
      struct sockaddr_storage b;
      memset(&b, 0, sizeof b);
      if (family == AF_INET) {
        ((struct sockaddr_in *)&b)->sin_family = AF_INET;
        ((struct sockaddr_in *)&b)->sin_port = htons((uint16_t)lport);
      } else {
        ((struct sockaddr_in6 *)&b)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&b)->sin6_port = htons((uint16_t)lport);
      }
      if (bind(ufd, (struct sockaddr *)&b, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) < 0) { perror("bind"); return 1; }
    }
  }
  long sent = 0, errors = 0;
  double start = now_s();
  while (sent < count) {
    if (rate > 0) {
      double due = start + (double)sent / rate;
      double t = now_s();
      if (t < due) {
        struct timespec d = {0, (long)((due - t) * 1e9)};
        if (d.tv_nsec > 1000000) d.tv_nsec = 1000000;
        nanosleep(&d, NULL);
        continue;
      }
    }
    if (fork_each) {
      pid_t child = fork();
      if (child == 0) {
        int fd = socket(family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
        if (fd >= 0) {
          if (tcp) (void)connect(fd, (struct sockaddr *)&ss, sslen);
          else (void)sendto(fd, "blast", 5, 0, (struct sockaddr *)&ss, sslen);
        }
        _exit(0);
      }
      if (child < 0) errors++;
    } else if (tcp) {
      int fd = socket(family, SOCK_STREAM, 0);
      if (fd < 0) { errors++; sent++; continue; }
      if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) errors++;
      close(fd);
    } else {
      if (sendto(ufd, "blast", 5, 0, (struct sockaddr *)&ss, sslen) < 0) errors++;
    }
    sent++;
  }
  printf("{\"sent\":%ld,\"errors\":%ld,\"seconds\":%.6f}\n", sent, errors, now_s() - start);
  return 0;
}
