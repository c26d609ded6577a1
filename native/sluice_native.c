/*
 * sluice_native: the smallest possible bridge between Node.js and the kernel
 * interfaces Node cannot reach on its own (netlink sockets, SO_MARK).
 *
 * Policy: this file only performs system calls. Every protocol (nfnetlink,
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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <uv.h>

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
  default: code = "ESYSCALL"; break;
  }
  napi_throw_error(env, code, msg);
  return NULL;
}

static int get_i32(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static napi_value make_i32(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
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
  return make_i32(env, fd);
}

static napi_value nl_port_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "EINVAL", "nlPortId(fd): fd must be an integer");
    return NULL;
  }
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
  void *buf = malloc((size_t)size);
  if (!buf) return throw_errno(env, "malloc", ENOMEM);
  ssize_t n;
  do {
    n = recv(fd, buf, (size_t)size, MSG_TRUNC | (block ? 0 : MSG_DONTWAIT));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    free(buf);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, "recv(netlink)", e);
  }
  if (n > size) {
    free(buf);
    return throw_errno(env, "recv(netlink): message larger than buffer", EMSGSIZE);
  }
  napi_value out;
  napi_status st = napi_create_buffer_copy(env, (size_t)n, buf, NULL, &out);
  free(buf);
  CHECK(st);
  return out;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "EINVAL", "closeFd(fd): fd must be an integer");
    return NULL;
  }
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
  char *buf;
  int closing;
} watcher_t;

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

static napi_value watch(napi_env env, napi_callback_info info) {
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
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "calloc", ENOMEM);
  w->buf = malloc(WATCH_BUF);
  if (!w->buf) {
    free(w);
    return throw_errno(env, "malloc", ENOMEM);
  }
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
    rc = uv_poll_start(&w->poll, UV_READABLE, on_poll);
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
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
