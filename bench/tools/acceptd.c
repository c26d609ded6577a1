/*
 * acceptd: the server side of bench/datapath.ts.
 *
 *   acceptd ADDR PORT
 *
 * Listens on ADDR:PORT (backlog 4096) and accepts and closes connections in a
 * blocking loop, as fast as they come: no data is read or written. Prints
 * "ready" on stdout once listening; runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sockaddr.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: acceptd ADDR PORT\n");
    return 2;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  int port = atoi(argv[2]);
  int family = parse_sockaddr(argv[1], port, &ss, &sslen);
  if (family < 0) {
    fprintf(stderr, "acceptd: not an address: %s\n", argv[1]);
    return 2;
  }
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0) {
    perror("acceptd: socket");
    return 1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
    perror("acceptd: bind");
    return 1;
  }
  if (listen(fd, 4096) < 0) {
    perror("acceptd: listen");
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0) {
      close(c);
    } else if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
      perror("acceptd: accept");
      /* Resource errors (EMFILE, ENOBUFS): back off briefly and keep serving. */
      usleep(1000);
    }
  }
}
