/*
 * sluice_native: the smallest possible bridge between Node.js and the kernel
 * interfaces Node cannot reach on its own (netlink sockets, SO_MARK).
 *
 * Policy: this file only performs system calls (native/dns_fast.c, the DNS
 * guard's cache hits on a thread of their own, is the one exception, and
 * says why). Every protocol (nfnetlink,
 * nf_tables, NFLOG, sock_diag) is encoded and decoded in TypeScript, where it
 * is typed, unit-tested and fuzzed. Nothing here interprets message contents.
 *
 * Exports (all throw an Error carrying `code` = errno name on failure):
 *   nlOpen(protocol)              -> fd      AF_NETLINK raw socket, CLOEXEC
 *   nlPortId(fd)                  -> number  kernel-assigned netlink port id
 *   setIntOpt(fd, level, name, v) -> void    setsockopt with an int value
 *   nlSend(fd, buffer)            -> number  sendto the kernel (pid 0)
 *   nlRecv(fd, size, block)       -> Buffer | null (null: would block)
 *   watch(fd, callback)           -> handle  callback(err, Buffer) on data
 *   unwatch(handle)               -> void
 *   closeFd(fd)                   -> void
 *   markedSocket(family, type, mark) -> fd   AF_INET/6 socket with SO_MARK
 *   udpOpen(family, addr, port, mark, rcvbuf[, flags]) -> fd
 *                                 bound UDP socket (addr: 4 or 16 bytes;
 *                                 port 0: the kernel picks; mark 0: none),
 *                                 non-blocking, CLOEXEC, IPV6_V6ONLY;
 *                                 flags 1: SO_RCVMARK (each datagram's
 *                                 packet mark is in its frame; kernels
 *                                 without it give 0)
 *   udpLocalPort(fd)              -> number  the bound port
 *   udpWatch(fd, callback)        -> handle  callback(err, Buffer) with a
 *                                 batch of datagrams (recvmmsg), framed
 *   udpSend(fd, buffer)           -> number  datagrams in `buffer` (same
 *                                 framing) sent with sendmmsg
 *   setThreadNice(n)              -> void    nice value of the calling thread
 *                                 only (setpriority on its thread id)
 *   tcpListen(family, addr, port, mark, backlog) -> fd
 *                                 listening TCP socket with SO_MARK (the DNS
 *                                 guard's: the kernel tells it from any
 *                                 other socket on its port), for Node's
 *                                 server.listen({ fd }), which owns it then
 *   flockTry(fd)                  -> boolean flock(LOCK_EX|LOCK_NB): true when
 *                                 taken, false when another holds it; the
 *                                 kernel releases it when its holder dies
 *   sdNotify(path, text)          -> void    one datagram to systemd's
 *                                 NOTIFY_SOCKET (a path, or @abstract)
 *   unixDgramSend(path, text)     -> void    the same, to any datagram
 *                                 socket (/dev/log, the journal's); never
 *                                 blocks (EAGAIN when its queue is full)
 *   udpGroupOpen(callback)        -> handle  a group of UDP sockets watched
 *                                 through one epoll instance:
 *                                 callback(err, fd, Buffer) per batch
 *   udpGroupAdd(handle, fd)       -> void    one epoll_ctl; closing the fd
 *                                 takes it out of the group
 *   udpGroupClose(handle)         -> void
 *   bpfLookup(fd, key, valueSize) -> Buffer | null  one BPF_MAP_LOOKUP_ELEM
 *                                 on a map fd (from sluice_bpf's loader);
 *                                 null when the key is absent
 *   bpfLookupMany(fd, keys, keySize, valueSize) -> Buffer  one crossing for
 *                                 a batch: N = keys.length / keySize lookups;
 *                                 the result is N status bytes (1 found,
 *                                 0 absent, 2 error) then N values
 *   netnsCookie([path])           -> bigint  SO_NETNS_COOKIE of this namespace, or of the
 *                                 one at path (a socket made there, the thread put back)
 *
 * Sockets from nlOpen and udpOpen belong to the Node environment (main
 * thread or worker) that opened them: when it ends without closing them (a
 * terminated worker), they are closed then, with its buffers freed.
 *
 * UDP framing, little-endian, one record after the other (no padding):
 *   u16 payload length | u16 port | u8 family (4|6) | u8 flags (1: the
 *   datagram was truncated to fit) | u16 zero | 16 bytes address (IPv4 in
 *   the first 4) | u32 packet mark (received, with SO_RCVMARK; else 0) |
 *   payload
 * Batching is the point: one crossing between JS and C, and one system
 * call, for up to 64 datagrams instead of one each (a DNS forwarder at tens
 * of thousands of queries a second spends most of its time there).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <linux/netlink.h>
#include <linux/bpf.h>
#include <uv.h>

#ifndef SO_RCVMARK
#define SO_RCVMARK 75
#endif

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, "ESLUICENAPI", "Node-API call failed: " #call);    \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s", what, strerror(err));
  const char *code = NULL;
  switch (err) {
  case EPERM: code = "EPERM"; break;
  case EACCES: code = "EACCES"; break;
  case ENOENT: code = "ENOENT"; break;
  case EINVAL: code = "EINVAL"; break;
  case ENOBUFS: code = "ENOBUFS"; break;
  case EAGAIN: code = "EAGAIN"; break;
  case EBADF: code = "EBADF"; break;
  case EMSGSIZE: code = "EMSGSIZE"; break;
  case EPROTONOSUPPORT: code = "EPROTONOSUPPORT"; break;
  case EAFNOSUPPORT: code = "EAFNOSUPPORT"; break;
  case EADDRINUSE: code = "EADDRINUSE"; break;
  default: code = "ESYSCALL"; break;
  }
  napi_throw_error(env, code, msg);
  return NULL;
}

static int get_i32(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

/* The single integer argument of fd-only functions; throws with `usage` otherwise. */
static int fd_arg(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !get_i32(env, argv[0], fd)) {
    napi_throw_type_error(env, "EINVAL", usage);
    return 0;
  }
  return 1;
}

static napi_value make_i32(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* ---- What each Node environment (the main thread, each worker) owns here.
 * Freed, and its sockets closed, when the environment ends: a worker that is
 * terminated or crashes leaks neither its receive buffers nor its netlink
 * sockets (it never gets to call closeFd). */

struct udp_area;
static void udp_area_release(struct udp_area *a);

struct env_data {
  struct udp_area *udp; /* the UDP receive area, made on first use */
  char *nl_buf;         /* nlRecv's buffer, kept between calls */
  size_t nl_cap;
  int *fds;             /* sockets opened by nlOpen and udpOpen, not yet closed */
  size_t nfds, fds_cap;
};

static void env_data_free(napi_env env, void *data, void *hint) {
  struct env_data *d = data;
  (void)env;
  (void)hint;
  if (!d) return;
  for (size_t i = 0; i < d->nfds; i++) close(d->fds[i]);
  free(d->fds);
  free(d->nl_buf);
  udp_area_release(d->udp);
  free(d);
}

static struct env_data *env_data_for(napi_env env) {
  struct env_data *d = NULL;
  if (napi_get_instance_data(env, (void **)&d) == napi_ok && d) return d;
  d = calloc(1, sizeof *d);
  if (!d) return NULL;
  if (napi_set_instance_data(env, d, env_data_free, NULL) != napi_ok) {
    free(d);
    return NULL;
  }
  return d;
}

/* Records an fd this environment owns; on failure closes it and returns 0. */
static int own_fd(napi_env env, int fd) {
  struct env_data *d = env_data_for(env);
  if (d && d->nfds == d->fds_cap) {
    size_t cap = d->fds_cap ? d->fds_cap * 2 : 16;
    int *grown = realloc(d->fds, cap * sizeof *grown);
    if (!grown) d = NULL;
    else {
      d->fds = grown;
      d->fds_cap = cap;
    }
  }
  if (!d) {
    close(fd);
    return 0;
  }
  d->fds[d->nfds++] = fd;
  return 1;
}

/* Returns a new fd to JS as this environment's. */
static napi_value owned_fd(napi_env env, int fd) {
  if (!own_fd(env, fd)) return throw_errno(env, "malloc", ENOMEM);
  return make_i32(env, fd);
}

static void disown_fd(napi_env env, int fd) {
  struct env_data *d = NULL;
  if (napi_get_instance_data(env, (void **)&d) != napi_ok || !d) return;
  for (size_t i = 0; i < d->nfds; i++) {
    if (d->fds[i] == fd) {
      d->fds[i] = d->fds[--d->nfds];
      return;
    }
  }
}

static napi_value nl_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t proto;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i32(env, argv[0], &proto)) {
    napi_throw_type_error(env, "EINVAL", "nlOpen(protocol): protocol must be an integer");
    return NULL;
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
  if (fd < 0) return throw_errno(env, "socket(AF_NETLINK)", errno);
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind(AF_NETLINK)", e);
  }
  return owned_fd(env, fd);
}

static napi_value nl_port_id(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "nlPortId(fd): fd must be an integer", &fd)) return NULL;
  struct sockaddr_nl addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
    return throw_errno(env, "getsockname", errno);
  napi_value r;
  CHECK(napi_create_uint32(env, addr.nl_pid, &r));
  return r;
}

static napi_value set_int_opt(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd, level, name, value;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4 || !get_i32(env, argv[0], &fd) || !get_i32(env, argv[1], &level) ||
      !get_i32(env, argv[2], &name) || !get_i32(env, argv[3], &value)) {
    napi_throw_type_error(env, "EINVAL", "setIntOpt(fd, level, name, value): integers expected");
    return NULL;
  }
  int v = value;
  if (setsockopt(fd, level, name, &v, sizeof v) < 0) return throw_errno(env, "setsockopt", errno);
  return NULL;
}

static napi_value nl_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  void *data;
  size_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_i32(env, argv[0], &fd) ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "nlSend(fd, buffer): fd and Buffer expected");
    return NULL;
  }
  struct sockaddr_nl dst = {.nl_family = AF_NETLINK};
  ssize_t n;
  do {
    n = sendto(fd, data, len, 0, (struct sockaddr *)&dst, sizeof dst);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "sendto(netlink)", errno);
  return make_i32(env, (int32_t)n);
}

/* One datagram. block=false returns null instead of waiting. MSG_TRUNC makes
 * recv report the real size, so a too-small buffer is an error, not silent
 * truncation of a kernel message. */
static napi_value nl_recv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, size;
  bool block;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !get_i32(env, argv[0], &fd) || !get_i32(env, argv[1], &size) ||
      napi_get_value_bool(env, argv[2], &block) != napi_ok || size <= 0 ||
      size > (64 << 20)) {
    napi_throw_type_error(env, "EINVAL", "nlRecv(fd, size, block): bad arguments");
    return NULL;
  }
  /* One receive buffer per environment, kept: a fresh megabyte per call costs
   * an mmap, page faults and a munmap, on every set update the DNS guard makes. */
  struct env_data *d = env_data_for(env);
  if (!d) return throw_errno(env, "malloc", ENOMEM);
  if (d->nl_cap < (size_t)size) {
    char *grown = realloc(d->nl_buf, (size_t)size);
    if (!grown) return throw_errno(env, "malloc", ENOMEM);
    d->nl_buf = grown;
    d->nl_cap = (size_t)size;
  }
  char *buf = d->nl_buf;
  ssize_t n;
  do {
    n = recv(fd, buf, (size_t)size, MSG_TRUNC | (block ? 0 : MSG_DONTWAIT));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, "recv(netlink)", e);
  }
  if (n > size) return throw_errno(env, "recv(netlink): message larger than buffer", EMSGSIZE);
  napi_value out;
  CHECK(napi_create_buffer_copy(env, (size_t)n, buf, NULL, &out));
  return out;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "closeFd(fd): fd must be an integer", &fd)) return NULL;
  disown_fd(env, fd);
  if (close(fd) < 0) return throw_errno(env, "close", errno);
  return NULL;
}

static napi_value marked_socket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t family, type, mark;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !get_i32(env, argv[0], &family) || !get_i32(env, argv[1], &type) ||
      !get_i32(env, argv[2], &mark) || (family != AF_INET && family != AF_INET6) ||
      (type != SOCK_DGRAM && type != SOCK_STREAM)) {
    napi_throw_type_error(env, "EINVAL", "markedSocket(family, type, mark): bad arguments");
    return NULL;
  }
  int fd = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  uint32_t m = (uint32_t)mark;
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "setsockopt(SO_MARK)", e);
  }
  return make_i32(env, fd);
}

/* ---- event-loop watcher: reads every queued datagram when the fd is
 * readable and hands them to JS as one Buffer (netlink messages carry their
 * own lengths, so concatenation keeps boundaries). ENOBUFS (the kernel
 * dropped messages because the socket buffer overflowed) is reported to JS
 * as an error so that loss is counted, never silent. */

#define WATCH_BUF (4 << 20)
#define WATCH_HEADROOM (256 << 10)

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int fd;
  char *buf; /* netlink watchers only */
  int udp;
  int closing;
} watcher_t;

struct udp_area;
static int udp_fill(napi_env env, struct udp_area *a, int n, napi_value *out);
static struct udp_area *udp_area_of(napi_env env);

/* Hands one batch (or an error) to the JS callback. For UDP watchers `len`
 * is the number of datagrams waiting in the env's receive area. */
static void deliver(watcher_t *w, int err, size_t len) {
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, args[2], result;
  napi_get_reference_value(env, w->callback, &cb);
  napi_get_global(env, &recv); /* make_callback needs an object as `this` */
  if (err) {
    napi_value code, msg;
    const char *c = err == ENOBUFS ? "ENOBUFS" : "ESYSCALL";
    napi_create_string_utf8(env, c, NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &args[0]);
    napi_get_null(env, &args[1]);
  } else if (w->udp) {
    struct udp_area *a = udp_area_of(env);
    napi_get_null(env, &args[0]);
    if (!a || !udp_fill(env, a, (int)len, &args[1])) {
      napi_close_handle_scope(env, scope);
      return;
    }
  } else {
    napi_get_null(env, &args[0]);
    napi_create_buffer_copy(env, len, w->buf, NULL, &args[1]);
  }
  napi_status st = napi_make_callback(env, w->async, recv, cb, 2, args, &result);
  if (st == napi_pending_exception) {
    /* An exception in the JS callback: hand it to process 'uncaughtException'. */
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
  napi_close_handle_scope(env, scope);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  watcher_t *w = (watcher_t *)handle->data;
  (void)events;
  if (w->closing) return;
  if (status < 0) {
    deliver(w, EIO, 0);
    return;
  }
  size_t used = 0;
  int err = 0;
  for (;;) {
    if (WATCH_BUF - used < WATCH_HEADROOM) break;
    ssize_t n = recv(w->fd, w->buf + used, WATCH_BUF - used, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (n == 0) break;
    used += (size_t)((n + 3) & ~3); /* keep NLMSG_ALIGN across datagrams */
  }
  if (used > 0) deliver(w, 0, used);
  if (err && !w->closing) deliver(w, err, 0);
}

static void on_close(uv_handle_t *handle) {
  watcher_t *w = (watcher_t *)handle->data;
  free(w->buf);
  free(w);
}


/* ---- UDP in batches (recvmmsg / sendmmsg). */

#define UDP_BATCH 64
/* The largest datagram delivered whole: the framing's length field is 16 bits.
 * A larger one (an IPv6 jumbogram) arrives cut to this and flagged truncated. */
#define UDP_MSG_MAX 65535
#define UDP_SLOT 65536 /* receive slots stay aligned */
#define UDP_HDR 28
/* Control data per datagram: room for one SO_MARK message (a u32). */
#define UDP_CTRL CMSG_SPACE(sizeof(uint32_t))
#define UDP_ROUNDS 4 /* recvmmsg calls per readiness callback, so one busy socket cannot hold the loop */

struct udp_area {
  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iov[UDP_BATCH];
  struct sockaddr_in6 from[UDP_BATCH]; /* large enough for both families */
  union {
    struct cmsghdr align;
    char buf[UDP_CTRL];
  } ctrl[UDP_BATCH];
  char *data; /* UDP_BATCH * UDP_SLOT */
};

static void udp_area_release(struct udp_area *a) {
  if (a) free(a->data);
  free(a);
}

/* The environment's receive area, if it has one. */
static struct udp_area *udp_area_of(napi_env env) {
  struct env_data *d = NULL;
  return napi_get_instance_data(env, (void **)&d) == napi_ok && d ? d->udp : NULL;
}

/* One receive area per Node environment (each worker thread has its own):
 * callbacks of one environment never overlap, and each batch is copied out
 * before the callback returns. */
static struct udp_area *udp_area_for(napi_env env) {
  struct env_data *d = env_data_for(env);
  if (!d) return NULL;
  if (d->udp) return d->udp;
  struct udp_area *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->data = malloc((size_t)UDP_BATCH * UDP_SLOT);
  if (!a->data) {
    free(a);
    return NULL;
  }
  d->udp = a;
  return a;
}

static void udp_prepare(struct udp_area *a) {
  for (int i = 0; i < UDP_BATCH; i++) {
    a->iov[i].iov_base = a->data + (size_t)i * UDP_SLOT;
    a->iov[i].iov_len = UDP_MSG_MAX;
    memset(&a->msgs[i].msg_hdr, 0, sizeof a->msgs[i].msg_hdr);
    a->msgs[i].msg_hdr.msg_iov = &a->iov[i];
    a->msgs[i].msg_hdr.msg_iovlen = 1;
    a->msgs[i].msg_hdr.msg_name = &a->from[i];
    a->msgs[i].msg_hdr.msg_namelen = sizeof a->from[i];
    a->msgs[i].msg_hdr.msg_control = a->ctrl[i].buf;
    a->msgs[i].msg_hdr.msg_controllen = sizeof a->ctrl[i].buf;
    a->msgs[i].msg_len = 0;
  }
}

/* Frames the first n received datagrams into one new Buffer. */
static int udp_fill(napi_env env, struct udp_area *a, int n, napi_value *out) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += UDP_HDR + a->msgs[i].msg_len;
  void *dst;
  if (napi_create_buffer(env, total, &dst, out) != napi_ok) return 0;
  unsigned char *p = dst;
  for (int i = 0; i < n; i++) {
    unsigned len = a->msgs[i].msg_len;
    struct msghdr *h = &a->msgs[i].msg_hdr;
    memset(p, 0, UDP_HDR);
    p[0] = len & 0xff;
    p[1] = (len >> 8) & 0xff;
    if (a->from[i].sin6_family == AF_INET6) {
      uint16_t port = ntohs(a->from[i].sin6_port);
      p[2] = port & 0xff;
      p[3] = port >> 8;
      p[4] = 6;
      memcpy(p + 8, &a->from[i].sin6_addr, 16);
    } else {
      struct sockaddr_in *s4 = (struct sockaddr_in *)&a->from[i];
      uint16_t port = ntohs(s4->sin_port);
      p[2] = port & 0xff;
      p[3] = port >> 8;
      p[4] = 4;
      memcpy(p + 8, &s4->sin_addr, 4);
    }
    p[5] = (h->msg_flags & MSG_TRUNC) ? 1 : 0;
    uint32_t mark = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_MARK && c->cmsg_len >= CMSG_LEN(sizeof mark))
        memcpy(&mark, CMSG_DATA(c), sizeof mark);
    }
    p[24] = mark & 0xff;
    p[25] = (mark >> 8) & 0xff;
    p[26] = (mark >> 16) & 0xff;
    p[27] = (mark >> 24) & 0xff;
    memcpy(p + UDP_HDR, a->iov[i].iov_base, len);
    p += UDP_HDR + len;
  }
  return 1;
}

static void on_poll_udp(uv_poll_t *handle, int status, int events) {
  watcher_t *w = (watcher_t *)handle->data;
  (void)events;
  if (w->closing) return;
  if (status < 0) {
    deliver(w, EIO, 0);
    return;
  }
  struct udp_area *a = udp_area_of(w->env);
  if (!a) return;
  for (int round = 0; round < UDP_ROUNDS && !w->closing; round++) {
    udp_prepare(a);
    int n = recvmmsg(w->fd, a->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) deliver(w, errno, 0);
      return;
    }
    if (n == 0) return;
    deliver(w, 0, (size_t)n);
    if (n < UDP_BATCH) return;
  }
}

static int addr_arg(napi_env env, napi_value v, int family, void *out) {
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return 0;
  if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16)) return 0;
  memcpy(out, data, len);
  return 1;
}

/* Binds `fd` to addr:port (addr: 4 or 16 bytes, by family). */
static int bind_to(int fd, int family, const unsigned char *addr, int port) {
  if (family == AF_INET) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    memcpy(&sa.sin_addr, addr, 4);
    return bind(fd, (struct sockaddr *)&sa, sizeof sa);
  }
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
  memcpy(&sa.sin6_addr, addr, 16);
  return bind(fd, (struct sockaddr *)&sa, sizeof sa);
}

static napi_value udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int32_t family, port, mark, rcvbuf, flags = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char addr[16];
  if (argc < 5 || !get_i32(env, argv[0], &family) || (family != AF_INET && family != AF_INET6) ||
      !addr_arg(env, argv[1], family, addr) || !get_i32(env, argv[2], &port) || port < 0 ||
      port > 65535 || !get_i32(env, argv[3], &mark) || !get_i32(env, argv[4], &rcvbuf) ||
      (argc >= 6 && !get_i32(env, argv[5], &flags))) {
    napi_throw_type_error(env, "EINVAL", "udpOpen(family, addr, port, mark, rcvbuf[, flags]): bad arguments");
    return NULL;
  }
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  const char *what = NULL;
  int one = 1;
  uint32_t m = (uint32_t)mark;
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) < 0) what = "setsockopt(SO_MARK)";
  if (!what && family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
    what = "setsockopt(IPV6_V6ONLY)";
  if (!what && rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
    what = "setsockopt(SO_RCVBUF)";
  /* Best effort: a kernel without SO_RCVMARK (before 5.19) delivers marks as 0. */
  if (!what && (flags & 1)) (void)setsockopt(fd, SOL_SOCKET, SO_RCVMARK, &one, sizeof one);
  if (!what) {
    /* Bound before anyone else sees it, without SO_REUSEADDR: the port is
     * this socket's alone (libuv sets SO_REUSEADDR on sockets it adopts,
     * which let two unbound sockets be given the same port). */
    if (bind_to(fd, family, addr, port) < 0) what = "bind";
  }
  if (what) {
    int e = errno;
    close(fd);
    return throw_errno(env, what, e);
  }
  return owned_fd(env, fd);
}

static napi_value udp_local_port(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "udpLocalPort(fd): fd must be an integer", &fd)) return NULL;
  struct sockaddr_in6 sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) return throw_errno(env, "getsockname", errno);
  uint16_t port = sa.sin6_family == AF_INET6 ? sa.sin6_port : ((struct sockaddr_in *)&sa)->sin_port;
  return make_i32(env, ntohs(port));
}

/* Sends every framed datagram in the buffer; returns how many the kernel
 * took. A datagram the kernel refuses (EPERM from a firewall, no route) is
 * skipped and the rest still go; a full send buffer (EAGAIN) stops there. */
static napi_value udp_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  unsigned char *data;
  size_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_i32(env, argv[0], &fd) ||
      napi_get_buffer_info(env, argv[1], (void **)&data, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "udpSend(fd, buffer): fd and Buffer expected");
    return NULL;
  }
  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iov[UDP_BATCH];
  struct sockaddr_in6 to[UDP_BATCH];
  size_t off = 0;
  int32_t sent = 0;
  while (off < len) {
    int n = 0;
    while (n < UDP_BATCH && off + UDP_HDR <= len) {
      unsigned plen = data[off] | (data[off + 1] << 8);
      unsigned port = data[off + 2] | (data[off + 3] << 8);
      int fam = data[off + 4];
      if (off + UDP_HDR + plen > len || (fam != 4 && fam != 6)) {
        napi_throw_range_error(env, "EINVAL", "udpSend: malformed frame");
        return NULL;
      }
      memset(&msgs[n], 0, sizeof msgs[n]);
      memset(&to[n], 0, sizeof to[n]);
      if (fam == 6) {
        to[n].sin6_family = AF_INET6;
        to[n].sin6_port = htons((uint16_t)port);
        memcpy(&to[n].sin6_addr, data + off + 8, 16);
        msgs[n].msg_hdr.msg_namelen = sizeof(struct sockaddr_in6);
      } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&to[n];
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        memcpy(&s4->sin_addr, data + off + 8, 4);
        msgs[n].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      }
      iov[n].iov_base = data + off + UDP_HDR;
      iov[n].iov_len = plen;
      msgs[n].msg_hdr.msg_name = &to[n];
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      off += UDP_HDR + plen;
      n++;
    }
    if (n == 0) break;
    int done = 0;
    while (done < n) {
      int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return make_i32(env, sent);
        done++; /* this datagram was refused: skip it */
        continue;
      }
      done += r;
      sent += r;
    }
  }
  return make_i32(env, sent);
}

static napi_value start_watch(napi_env env, napi_callback_info info, int udp) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  napi_valuetype t;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_i32(env, argv[0], &fd) || napi_typeof(env, argv[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, "EINVAL", "watch(fd, callback): fd and function expected");
    return NULL;
  }
  if (udp && !udp_area_for(env)) return throw_errno(env, "malloc", ENOMEM);
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "calloc", ENOMEM);
  if (!udp) {
    w->buf = malloc(WATCH_BUF);
    if (!w->buf) {
      free(w);
      return throw_errno(env, "malloc", ENOMEM);
    }
  }
  w->udp = udp;
  w->env = env;
  w->fd = fd;
  napi_value name, resource;
  uv_loop_t *loop;
  /* Some Node versions reject a NULL async resource: give it an object. */
  if (napi_get_uv_event_loop(env, &loop) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok ||
      napi_create_string_utf8(env, "sluice.netlink", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_object(env, &resource) != napi_ok ||
      napi_async_init(env, resource, name, &w->async) != napi_ok) {
    free(w->buf);
    free(w);
    napi_throw_error(env, "ESLUICENAPI", "watch: Node-API setup failed");
    return NULL;
  }
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc == 0) {
    w->poll.data = w;
    rc = uv_poll_start(&w->poll, UV_READABLE, udp ? on_poll_udp : on_poll);
  }
  if (rc != 0) {
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    free(w->buf);
    free(w);
    napi_throw_error(env, "ESYSCALL", uv_strerror(rc));
    return NULL;
  }
  napi_value handle;
  CHECK(napi_create_external(env, w, NULL, NULL, &handle));
  return handle;
}

static napi_value watch(napi_env env, napi_callback_info info) { return start_watch(env, info, 0); }
static napi_value udp_watch(napi_env env, napi_callback_info info) { return start_watch(env, info, 1); }

static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *p;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p) {
    napi_throw_type_error(env, "EINVAL", "unwatch(handle): handle expected");
    return NULL;
  }
  watcher_t *w = (watcher_t *)p;
  if (w->closing) return NULL;
  w->closing = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->async);
  uv_close((uv_handle_t *)&w->poll, on_close);
  return NULL;
}

/* ---- A group of UDP sockets behind one epoll instance, itself watched by
 * the loop. The DNS guard opens a socket for every batch of upstream
 * queries: a watcher of its own per socket (libuv's poll handle, a Node-API
 * reference and async context, five system calls to set up and tear down)
 * cost as much as the socket. In a group, adding one is one epoll_ctl, and
 * closing its fd takes it out. */

typedef struct {
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uv_poll_t poll;
  int epfd;
  int closing;
} group_t;

/* Hands one socket's batch (n datagrams in the receive area), or an error, to the JS callback. */
static void deliver_group(group_t *g, int fd, int err, int n) {
  napi_env env = g->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, args[3], result;
  napi_get_reference_value(env, g->callback, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, fd, &args[1]);
  if (err) {
    napi_value code, msg;
    napi_create_string_utf8(env, "ESYSCALL", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &args[0]);
    napi_get_null(env, &args[2]);
  } else {
    struct udp_area *a = udp_area_of(env);
    napi_get_null(env, &args[0]);
    if (!a || !udp_fill(env, a, n, &args[2])) {
      napi_close_handle_scope(env, scope);
      return;
    }
  }
  napi_status st = napi_make_callback(env, g->async, recv, cb, 3, args, &result);
  if (st == napi_pending_exception) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
  napi_close_handle_scope(env, scope);
}

static void on_poll_group(uv_poll_t *handle, int status, int events) {
  group_t *g = (group_t *)handle->data;
  (void)events;
  if (g->closing) return;
  if (status < 0) {
    deliver_group(g, -1, EIO, 0);
    return;
  }
  struct udp_area *a = udp_area_of(g->env);
  if (!a) return;
  struct epoll_event evs[UDP_BATCH];
  int n = epoll_wait(g->epfd, evs, UDP_BATCH, 0);
  /* Level-triggered: a socket with more left after UDP_ROUNDS keeps the group readable. */
  for (int i = 0; i < n && !g->closing; i++) {
    int fd = evs[i].data.fd;
    for (int round = 0; round < UDP_ROUNDS && !g->closing; round++) {
      udp_prepare(a);
      int k = recvmmsg(fd, a->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
      if (k < 0) {
        if (errno == EINTR) continue;
        /* EBADF: closed by an earlier callback of this batch. */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EBADF) deliver_group(g, fd, errno, 0);
        break;
      }
      if (k == 0) break;
      deliver_group(g, fd, 0, k);
      if (k < UDP_BATCH) break;
    }
  }
}

static void on_close_group(uv_handle_t *handle) {
  group_t *g = (group_t *)handle->data;
  close(g->epfd);
  free(g);
}

static napi_value udp_group_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype t;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "EINVAL", "udpGroupOpen(callback): function expected");
    return NULL;
  }
  if (!udp_area_for(env)) return throw_errno(env, "malloc", ENOMEM);
  group_t *g = calloc(1, sizeof *g);
  if (!g) return throw_errno(env, "calloc", ENOMEM);
  g->env = env;
  g->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g->epfd < 0) {
    int e = errno;
    free(g);
    return throw_errno(env, "epoll_create1", e);
  }
  napi_value name, resource;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, argv[0], 1, &g->callback) != napi_ok ||
      napi_create_string_utf8(env, "sluice.udpgroup", NAPI_AUTO_LENGTH, &name) != napi_ok || napi_create_object(env, &resource) != napi_ok ||
      napi_async_init(env, resource, name, &g->async) != napi_ok) {
    close(g->epfd);
    free(g);
    napi_throw_error(env, "ESLUICENAPI", "udpGroupOpen: Node-API setup failed");
    return NULL;
  }
  int rc = uv_poll_init(loop, &g->poll, g->epfd);
  if (rc == 0) {
    g->poll.data = g;
    rc = uv_poll_start(&g->poll, UV_READABLE, on_poll_group);
  }
  if (rc != 0) {
    napi_delete_reference(env, g->callback);
    napi_async_destroy(env, g->async);
    close(g->epfd);
    free(g);
    napi_throw_error(env, "ESYSCALL", uv_strerror(rc));
    return NULL;
  }
  napi_value handle;
  CHECK(napi_create_external(env, g, NULL, NULL, &handle));
  return handle;
}

static group_t *group_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p || ((group_t *)p)->closing) return NULL;
  return (group_t *)p;
}

static napi_value udp_group_add(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  group_t *g = argc >= 2 ? group_arg(env, argv[0]) : NULL;
  if (!g || !get_i32(env, argv[1], &fd)) {
    napi_throw_type_error(env, "EINVAL", "udpGroupAdd(handle, fd): an open group and an fd expected");
    return NULL;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return throw_errno(env, "epoll_ctl", errno);
  return NULL;
}

static napi_value udp_group_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  group_t *g = argc >= 1 ? group_arg(env, argv[0]) : NULL;
  if (!g) return NULL;
  g->closing = 1;
  uv_poll_stop(&g->poll);
  napi_delete_reference(env, g->callback);
  napi_async_destroy(env, g->async);
  uv_close((uv_handle_t *)&g->poll, on_close_group);
  return NULL;
}

/* Background threads (a worker's /proc scans) yield the CPU to the thread
 * answering DNS queries: on Linux a thread id given to setpriority names
 * that thread alone. */
static napi_value set_thread_nice(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t nice;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i32(env, argv[0], &nice) || nice < -20 || nice > 19) {
    napi_throw_type_error(env, "EINVAL", "setThreadNice(n): n must be an integer from -20 to 19");
    return NULL;
  }
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (setpriority(PRIO_PROCESS, (id_t)tid, nice) < 0) return throw_errno(env, "setpriority", errno);
  return NULL;
}

/* A listening TCP socket carrying `mark` (the guard's listeners: a redirected
 * query is delivered only to a socket with the guard's mark). Bound and
 * listening before Node adopts it. SO_REUSEADDR, as every TCP server sets it,
 * only lets it rebind over TIME_WAIT connections of its own port. */
static napi_value tcp_listen(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t family, port, mark, backlog;
  unsigned char addr[16];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !get_i32(env, argv[0], &family) || (family != AF_INET && family != AF_INET6) ||
      !addr_arg(env, argv[1], family, addr) || !get_i32(env, argv[2], &port) || port < 1 || port > 65535 ||
      !get_i32(env, argv[3], &mark) || !get_i32(env, argv[4], &backlog) || backlog < 1) {
    napi_throw_type_error(env, "EINVAL", "tcpListen(family, addr, port, mark, backlog): bad arguments");
    return NULL;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  const char *what = NULL;
  int one = 1;
  uint32_t m = (uint32_t)mark;
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) < 0) what = "setsockopt(SO_MARK)";
  if (!what && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) what = "setsockopt(SO_REUSEADDR)";
  if (!what && family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
    what = "setsockopt(IPV6_V6ONLY)";
  if (!what && bind_to(fd, family, addr, port) < 0) what = "bind";
  if (!what && listen(fd, backlog) < 0) what = "listen";
  if (what) {
    int e = errno;
    close(fd);
    return throw_errno(env, what, e);
  }
  return make_i32(env, fd);
}

/* The state lock: flock, so a holder that dies releases it with its last
 * descriptor (no stale lock to take over, no race between two takers). */
static napi_value flock_try(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "flockTry(fd): fd must be an integer", &fd)) return NULL;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      napi_value r;
      napi_get_boolean(env, false, &r);
      return r;
    }
    return throw_errno(env, "flock", errno);
  }
  napi_value r;
  napi_get_boolean(env, true, &r);
  return r;
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. A leading
 * '@' names an abstract socket. The message is sent as given (no parsing).
 * Also unixDgramSend: the local syslog socket (/dev/log) and the journal's
 * native socket. Never blocks: a receiver whose queue is full (a stuck
 * syslog daemon) is EAGAIN, not a stalled event loop. */
static napi_value sd_notify_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char text[4096];
  size_t plen = 0, tlen = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], text, sizeof text, &tlen) != napi_ok || plen == 0 ||
      plen >= sizeof(((struct sockaddr_un *)0)->sun_path) || tlen == 0 || tlen >= sizeof text - 1) {
    napi_throw_type_error(env, "EINVAL", "sdNotify(path, text): a socket path and a short message expected");
    return NULL;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@') sa.sun_path[0] = 0;
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  ssize_t n = sendto(fd, text, tlen, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
  int err = errno;
  close(fd);
  if (n < 0) return throw_errno(env, "sendto", err);
  return NULL;
}

/* One BPF_MAP_LOOKUP_ELEM: the map's fd came from the eBPF loader (sluice_bpf),
 * the key and value layouts are the caller's (src/monitor/kernel-attribution.ts). */
static napi_value bpf_lookup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, vsize;
  void *key;
  size_t klen;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !get_i32(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], &key, &klen) != napi_ok ||
      !get_i32(env, argv[2], &vsize) || klen == 0 || vsize <= 0 || vsize > (1 << 20)) {
    napi_throw_type_error(env, "EINVAL", "bpfLookup(fd, key, valueSize): fd, Buffer and a size up to 1 MiB expected");
    return NULL;
  }
  void *data;
  napi_value out;
  CHECK(napi_create_buffer(env, (size_t)vsize, &data, &out));
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)fd;
  attr.key = (uint64_t)(uintptr_t)key;
  attr.value = (uint64_t)(uintptr_t)data;
  if (syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr, sizeof attr) < 0) {
    if (errno == ENOENT) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, "bpf(BPF_MAP_LOOKUP_ELEM)", errno);
  }
  return out;
}

/* Many BPF_MAP_LOOKUP_ELEMs in one call: the collector looks up every record
 * of a batch at once, so the cost per record is the system call alone (no
 * JS-to-C crossing and no buffer per record). The map's own key and value
 * sizes are checked first: the kernel reads key_size bytes at each key and
 * writes value_size at each value, whatever the caller believed. */
static napi_value bpf_lookup_many(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd, ksize, vsize;
  uint8_t *keys;
  size_t klen;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4 || !get_i32(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], (void **)&keys, &klen) != napi_ok ||
      !get_i32(env, argv[2], &ksize) || !get_i32(env, argv[3], &vsize) || ksize <= 0 || ksize > 512 || vsize <= 0 ||
      vsize > 4096 || klen % (size_t)ksize != 0 || klen / (size_t)ksize > 65536) {
    napi_throw_type_error(env, "EINVAL", "bpfLookupMany(fd, keys, keySize, valueSize): keys a whole number of keys (at most 65,536), sizes up to 512 and 4,096 bytes");
    return NULL;
  }
  struct bpf_map_info mi;
  union bpf_attr attr;
  memset(&mi, 0, sizeof mi);
  memset(&attr, 0, sizeof attr);
  attr.info.bpf_fd = (uint32_t)fd;
  attr.info.info_len = sizeof mi;
  attr.info.info = (uint64_t)(uintptr_t)&mi;
  if (syscall(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof attr) < 0) return throw_errno(env, "bpf(BPF_OBJ_GET_INFO_BY_FD)", errno);
  if (mi.key_size != (uint32_t)ksize || mi.value_size != (uint32_t)vsize) {
    napi_throw_error(env, "EINVAL", "bpfLookupMany: the map's key or value size is not the one given");
    return NULL;
  }
  size_t n = klen / (size_t)ksize;
  uint8_t *data;
  napi_value out;
  CHECK(napi_create_buffer(env, n + n * (size_t)vsize, (void **)&data, &out));
  for (size_t i = 0; i < n; i++) {
    memset(&attr, 0, sizeof attr);
    attr.map_fd = (uint32_t)fd;
    attr.key = (uint64_t)(uintptr_t)(keys + i * (size_t)ksize);
    attr.value = (uint64_t)(uintptr_t)(data + n + i * (size_t)vsize);
    if (syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr, sizeof attr) == 0) data[i] = 1;
    else data[i] = errno == ENOENT ? 0 : 2;
  }
  return out;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
/* The cookie of this thread's network namespace (Linux 5.14): what the
 * attribution probes key flows by. */
/* A socket made in the network namespace at `path` (a /run/netns file), this
 * thread put back in its own namespace before returning, whatever happened. */
static int socket_in_netns(const char *path, int *err) {
  int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) {
    *err = errno;
    return -1;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    *err = errno;
    close(own);
    return -1;
  }
  int fd = -1;
  if (setns(target, CLONE_NEWNET) < 0) {
    *err = errno;
  } else {
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) *err = errno;
    if (setns(own, CLONE_NEWNET) < 0) {
      /* Cannot return to our own namespace: nothing this process does after is safe. */
      abort();
    }
  }
  close(target);
  close(own);
  return fd;
}

static napi_value netns_cookie(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int err = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) CHECK(napi_typeof(env, argv[0], &t));
  if (t == napi_string) {
    char path[256];
    size_t len = 0;
    if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
      napi_throw_type_error(env, NULL, "netnsCookie(path): a path to a network namespace");
      return NULL;
    }
    fd = socket_in_netns(path, &err);
    if (fd < 0) return throw_errno(env, "netns socket", err);
  } else {
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return throw_errno(env, "socket", errno);
  }
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  int r = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  err = errno;
  close(fd);
  if (r < 0) return throw_errno(env, "getsockopt(SO_NETNS_COOKIE)", err);
  napi_value out;
  CHECK(napi_create_bigint_uint64(env, cookie, &out));
  return out;
}

void sluice_dns_fast_register(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"nlOpen", 0, nl_open, 0, 0, 0, napi_enumerable, 0},
      {"nlPortId", 0, nl_port_id, 0, 0, 0, napi_enumerable, 0},
      {"setIntOpt", 0, set_int_opt, 0, 0, 0, napi_enumerable, 0},
      {"nlSend", 0, nl_send, 0, 0, 0, napi_enumerable, 0},
      {"nlRecv", 0, nl_recv, 0, 0, 0, napi_enumerable, 0},
      {"closeFd", 0, close_fd, 0, 0, 0, napi_enumerable, 0},
      {"watch", 0, watch, 0, 0, 0, napi_enumerable, 0},
      {"unwatch", 0, unwatch, 0, 0, 0, napi_enumerable, 0},
      {"markedSocket", 0, marked_socket, 0, 0, 0, napi_enumerable, 0},
      {"udpOpen", 0, udp_open, 0, 0, 0, napi_enumerable, 0},
      {"udpLocalPort", 0, udp_local_port, 0, 0, 0, napi_enumerable, 0},
      {"udpWatch", 0, udp_watch, 0, 0, 0, napi_enumerable, 0},
      {"udpSend", 0, udp_send, 0, 0, 0, napi_enumerable, 0},
      {"setThreadNice", 0, set_thread_nice, 0, 0, 0, napi_enumerable, 0},
      {"tcpListen", 0, tcp_listen, 0, 0, 0, napi_enumerable, 0},
      {"flockTry", 0, flock_try, 0, 0, 0, napi_enumerable, 0},
      {"sdNotify", 0, sd_notify_send, 0, 0, 0, napi_enumerable, 0},
      {"unixDgramSend", 0, sd_notify_send, 0, 0, 0, napi_enumerable, 0},
      {"udpGroupOpen", 0, udp_group_open, 0, 0, 0, napi_enumerable, 0},
      {"udpGroupAdd", 0, udp_group_add, 0, 0, 0, napi_enumerable, 0},
      {"udpGroupClose", 0, udp_group_close, 0, 0, 0, napi_enumerable, 0},
      {"bpfLookup", 0, bpf_lookup, 0, 0, 0, napi_enumerable, 0},
      {"bpfLookupMany", 0, bpf_lookup_many, 0, 0, 0, napi_enumerable, 0},
      {"netnsCookie", 0, netns_cookie, 0, 0, 0, napi_enumerable, 0},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  sluice_dns_fast_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
