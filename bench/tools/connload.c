/*
 * connload: new-connection load generator for bench/datapath.ts.
 *
 *   connload ADDR PORT SECONDS [SLICE_MS]
 *
 * Opens TCP connections to ADDR:PORT one after another for SECONDS: socket(),
 * blocking connect(), close(). SO_LINGER {on, 0} makes close() send RST, so no
 * TIME_WAIT state piles up and ephemeral ports are reused at once. Each
 * connect() is timed with CLOCK_MONOTONIC. Prints one JSON object:
 *
 *   {"connects":N,"errors":E,"errno":{"111":E1,...},"seconds":S,"rate":R,
 *    "lat_us":{"min":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..},
 *    "slice_ms":100,"slices":[n0,n1,...],"cpu_us_per_connect":C}
 *
 * slices[i] counts the connects completed in the i-th SLICE_MS (default 100)
 * of the run: the caller can take the median slice rate, which CPU time stolen
 * by other processes on a shared machine disturbs far less than the mean.
 * cpu_us_per_connect is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID, user
 * and system, which includes softirq work run while it is on the CPU: the
 * packet path and the firewall) per successful connect: what a connection
 * costs, without the time spent waiting for a CPU.
 * A connect that fails counts as an error; its time is not in the latencies.
 * SO_SNDTIMEO bounds a connect() at 3 s (a dropped SYN shows as a ~1 s
 * retransmit in the latencies, a blackhole as errors, never as a hang).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "sockaddr.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double pct(const uint32_t *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return v[rank - 1] / 1000.0;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: connload ADDR PORT SECONDS [SLICE_MS]\n");
    return 2;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  int port = atoi(argv[2]);
  double seconds = atof(argv[3]);
  double slice_ms = argc == 5 ? atof(argv[4]) : 100;
  if (port <= 0 || port > 65535 || !(seconds > 0) || !(slice_ms >= 1) || slice_ms > seconds * 1000) {
    fprintf(stderr, "connload: bad port, duration or slice\n");
    return 2;
  }
  int family = parse_sockaddr(argv[1], port, &ss, &sslen);
  if (family < 0) {
    fprintf(stderr, "connload: not an address: %s\n", argv[1]);
    return 2;
  }

  size_t cap = 1 << 20, n = 0;
  uint32_t *lat = malloc(cap * sizeof *lat);
  if (!lat) return 1;
  uint64_t errors = 0;
  uint64_t errno_count[256] = {0};
  const struct linger lg = {1, 0};
  const struct timeval to = {3, 0};
  uint64_t slice_ns = (uint64_t)(slice_ms * 1e6);
  size_t nslices = (size_t)(seconds * 1e9 / (double)slice_ns); /* whole slices only */
  uint64_t *slices = calloc(nslices ? nslices : 1, sizeof *slices);
  if (!slices) return 1;

  uint64_t cpu0 = cpu_ns();
  uint64_t start = now_ns();
  uint64_t deadline = start + (uint64_t)(seconds * 1e9);
  uint64_t end = start;
  for (;;) {
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) {
      perror("connload: socket");
      return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &to, sizeof to);
    uint64_t t0 = now_ns();
    int rc = connect(fd, (struct sockaddr *)&ss, sslen);
    uint64_t t1 = now_ns();
    if (rc == 0) {
      if (n == cap) {
        cap *= 2;
        uint32_t *p = realloc(lat, cap * sizeof *lat);
        if (!p) return 1;
        lat = p;
      }
      uint64_t d = t1 - t0;
      lat[n++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
      size_t si = (size_t)((t1 - start) / slice_ns);
      if (si < nslices) slices[si]++;
    } else {
      errors++;
      errno_count[errno & 255]++;
    }
    close(fd);
    end = t1;
    if (t1 >= deadline) break;
  }
  double cpu_used = (double)(cpu_ns() - cpu0);
  double elapsed = (double)(end - start) / 1e9;

  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += lat[i];
  qsort(lat, n, sizeof *lat, cmp_u32);
  printf("{\"connects\":%zu,\"errors\":%llu,\"errno\":{", n, (unsigned long long)errors);
  int first = 1;
  for (int e = 0; e < 256; e++) {
    if (!errno_count[e]) continue;
    printf("%s\"%d\":%llu", first ? "" : ",", e, (unsigned long long)errno_count[e]);
    first = 0;
  }
  printf("},\"seconds\":%.6f,\"rate\":%.1f,\"lat_us\":{\"min\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f}",
         elapsed, elapsed > 0 ? (double)n / elapsed : 0, n ? lat[0] / 1000.0 : 0, pct(lat, n, 50), pct(lat, n, 90), pct(lat, n, 99),
         pct(lat, n, 99.9), n ? lat[n - 1] / 1000.0 : 0, n ? sum / (double)n / 1000.0 : 0);
  printf(",\"slice_ms\":%g,\"slices\":[", slice_ms);
  for (size_t i = 0; i < nslices; i++) printf("%s%llu", i ? "," : "", (unsigned long long)slices[i]);
  printf("],\"cpu_us_per_connect\":%.3f}\n", n ? cpu_used / (double)n / 1000.0 : 0);
  free(slices);
  free(lat);
  return 0;
}
