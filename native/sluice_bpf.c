/*
 * Loads and attaches Sluice's attribution probes (native/bpf/attribution.bpf.c)
 * with libbpf. A separate addon from sluice_native so that a host without
 * libbpf, BTF or the privileges to load tracing programs loses only kernel
 * attribution: the loader reports why, and the rest of Sluice runs as before.
 * Map lookups do not come through here: they are one bpf() syscall each, in
 * sluice_native (bpfLookup), usable from any thread given the map's fd.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <node_api.h>

#ifndef SLUICE_HAVE_LIBBPF
/* Built where libbpf-dev was not installed: loading says so, and Sluice falls back. */
static napi_value load(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "ENOSYS", "eBPF load: this build has no libbpf (install libbpf-dev and run make setup)");
  return NULL;
}
static napi_value close_loaded(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  return NULL;
}
static napi_value attach_cgroup(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "ENOSYS", "eBPF attach: this build has no libbpf");
  return NULL;
}
static napi_value load_async(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "ENOSYS", "eBPF load: this build has no libbpf (install libbpf-dev and run make setup)");
  return NULL;
}
#else
#include <fcntl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define LINKS_MAX 8
#define LOG_MAX 4096

struct loaded {
  struct bpf_object *obj;
  struct bpf_link *links[LINKS_MAX];
  int nlinks;
};

/* The tail of libbpf's messages during one load, for the error a user sees. */
static char load_log[LOG_MAX];
static size_t load_log_len;

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  int n = vsnprintf(line, sizeof line, fmt, ap);
  if (n <= 0) return 0;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  if (load_log_len + (size_t)n >= LOG_MAX) {
    /* keep the newest: drop the oldest half */
    size_t keep = load_log_len / 2;
    memmove(load_log, load_log + load_log_len - keep, keep);
    load_log_len = keep;
  }
  if (load_log_len + (size_t)n < LOG_MAX) {
    memcpy(load_log + load_log_len, line, (size_t)n);
    load_log_len += (size_t)n;
    load_log[load_log_len] = 0;
  }
  return 0;
}

static napi_value throw_load(napi_env env, const char *what, int err) {
  char msg[LOG_MAX + 256];
  snprintf(msg, sizeof msg, "%s: %s%s%s", what, strerror(err > 0 ? err : -err), load_log_len ? "\n" : "", load_log_len ? load_log : "");
  char code[32];
  snprintf(code, sizeof code, "E%d", err > 0 ? err : -err);
  napi_throw_error(env, code, msg);
  return NULL;
}

static void unload(struct loaded *l) {
  if (!l) return;
  for (int i = 0; i < l->nlinks; i++) bpf_link__destroy(l->links[i]);
  l->nlinks = 0;
  if (l->obj) bpf_object__close(l->obj);
  l->obj = NULL;
}

static void finalize_loaded(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct loaded *l = data;
  unload(l);
  free(l);
}

static int set_fd(napi_env env, napi_value obj, const char *name, int fd) {
  napi_value v;
  if (napi_create_int32(env, fd, &v) != napi_ok) return -1;
  return napi_set_named_property(env, obj, name, v) == napi_ok ? 0 : -1;
}

/* The programs attached to a cgroup (sock_ops; any cgroup socket-address hook) rather than by their section. */
static int cgroup_prog(const struct bpf_program *prog) {
  enum bpf_prog_type t = bpf_program__type(prog);
  return t == BPF_PROG_TYPE_SOCK_OPS || t == BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
}

/* Attaches the object's cgroup programs to the cgroup at cgpath (a link each: others attached there stay). */
static int attach_sockops(struct loaded *l, const char *cgpath) {
  struct bpf_program *prog;
  bpf_object__for_each_program(prog, l->obj) {
    if (!cgroup_prog(prog)) continue;
    if (l->nlinks >= LINKS_MAX) return E2BIG;
    int cg = open(cgpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0) return errno;
    struct bpf_link *link = bpf_program__attach_cgroup(prog, cg);
    int saved = errno;
    close(cg); /* the link holds the cgroup */
    if (!link) {
      snprintf(load_log + load_log_len, LOG_MAX - load_log_len, "program %s did not attach\n", bpf_program__name(prog));
      load_log_len = strlen(load_log);
      return saved ? saved : EINVAL;
    }
    l->links[l->nlinks++] = link;
  }
  return 0;
}

/* The arguments of load and loadAsync. */
struct load_args {
  char path[4096];
  char cgpath[4096];
  size_t cglen;
  uint32_t flows_max, execs_max;
};

static int get_load_args(napi_env env, napi_value *argv, size_t argc, struct load_args *a, const char *usage) {
  if (argc < 4) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  if (napi_get_value_string_utf8(env, argv[3], a->cgpath, sizeof a->cgpath, &a->cglen) != napi_ok || a->cglen >= sizeof a->cgpath - 1) {
    napi_throw_type_error(env, NULL, "cgroupRoot: a path");
    return -1;
  }
  size_t plen = 0;
  if (napi_get_value_string_utf8(env, argv[0], a->path, sizeof a->path, &plen) != napi_ok || plen == 0 || plen >= sizeof a->path - 1) {
    napi_throw_type_error(env, NULL, "objectPath: a string");
    return -1;
  }
  if (napi_get_value_uint32(env, argv[1], &a->flows_max) != napi_ok || napi_get_value_uint32(env, argv[2], &a->execs_max) != napi_ok ||
      a->flows_max < 1024 || a->execs_max < 256 || a->flows_max > (1u << 24) || a->execs_max > (1u << 20)) {
    napi_throw_range_error(env, NULL, "flowsMax 1024..16777216, execsMax 256..1048576");
    return -1;
  }
  return 0;
}

/* Opens, sizes, loads and attaches (no Node-API: runs on any thread). 0, or an errno with *stage set;
 * on failure l is unloaded. The caller holds libbpf's print hook. */
static int do_load(struct loaded *l, const struct load_args *a, const char **stage) {
  int err = 0;
  *stage = "open";
  l->obj = bpf_object__open_file(a->path, NULL);
  if (!l->obj) {
    err = errno ? errno : EINVAL;
    goto fail;
  }
  *stage = "size maps";
  struct bpf_map *flows = bpf_object__find_map_by_name(l->obj, "flows");
  struct bpf_map *execs = bpf_object__find_map_by_name(l->obj, "execs");
  struct bpf_map *stats = bpf_object__find_map_by_name(l->obj, "stats");
  if (!flows || !execs || !stats) {
    err = ENOENT;
    goto fail;
  }
  if ((err = bpf_map__set_max_entries(flows, a->flows_max)) || (err = bpf_map__set_max_entries(execs, a->execs_max))) goto fail;
  *stage = "load";
  if ((err = bpf_object__load(l->obj))) goto fail;
  *stage = "attach";
  struct bpf_program *prog;
  bpf_object__for_each_program(prog, l->obj) {
    if (l->nlinks >= LINKS_MAX) {
      err = E2BIG;
      goto fail;
    }
    if (cgroup_prog(prog)) continue;
    struct bpf_link *link = bpf_program__attach(prog);
    if (!link) {
      err = errno ? errno : EINVAL;
      snprintf(load_log + load_log_len, LOG_MAX - load_log_len, "program %s did not attach\n", bpf_program__name(prog));
      load_log_len = strlen(load_log);
      goto fail;
    }
    l->links[l->nlinks++] = link;
  }
  if (a->cglen > 0 && (err = attach_sockops(l, a->cgpath))) goto fail;
  return 0;
fail:
  unload(l);
  return err ? err : EINVAL;
}

/* { handle, flows, execs, stats, cpus, programs } for a loaded object (the handle owns l). */
static napi_value loaded_result(napi_env env, struct loaded *l) {
  napi_value out, handle, names;
  napi_create_object(env, &out);
  if (napi_create_external(env, l, finalize_loaded, NULL, &handle) != napi_ok) {
    unload(l);
    free(l);
    napi_throw_error(env, NULL, "napi_create_external failed");
    return NULL;
  }
  napi_set_named_property(env, out, "handle", handle);
  set_fd(env, out, "flows", bpf_map__fd(bpf_object__find_map_by_name(l->obj, "flows")));
  set_fd(env, out, "execs", bpf_map__fd(bpf_object__find_map_by_name(l->obj, "execs")));
  set_fd(env, out, "stats", bpf_map__fd(bpf_object__find_map_by_name(l->obj, "stats")));
  set_fd(env, out, "cpus", libbpf_num_possible_cpus());
  napi_create_array(env, &names);
  uint32_t i = 0;
  struct bpf_program *prog;
  bpf_object__for_each_program(prog, l->obj) {
    napi_value s;
    napi_create_string_utf8(env, bpf_program__name(prog), NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, names, i++, s);
  }
  napi_set_named_property(env, out, "programs", names);
  return out;
}

/* The error a failed load throws or rejects with: "eBPF <stage>: <strerror>\n<libbpf's messages>", code E<errno>. */
static napi_value load_error(napi_env env, const char *stage, int err) {
  char what[64];
  snprintf(what, sizeof what, "eBPF %s", stage);
  char msg[LOG_MAX + 256];
  snprintf(msg, sizeof msg, "%s: %s%s%s", what, strerror(err > 0 ? err : -err), load_log_len ? "\n" : "", load_log_len ? load_log : "");
  char code[32];
  snprintf(code, sizeof code, "E%d", err > 0 ? err : -err);
  napi_value m, c, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  return e;
}

/* load(objectPath, flowsMax, execsMax, cgroupRoot) -> { handle, flows, execs, stats, cpus, programs: [names] }
 * sock_ops programs are attached to cgroupRoot (a link: others attached there stay); the rest by their section.
 * cgroupRoot "" loads and attaches the rest, and leaves the sock_ops programs for attachCgroup (a run loads its
 * probes while its cgroup is being made, and attaches them to it once it is). */
static napi_value load(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct load_args *a = calloc(1, sizeof *a);
  if (!a) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (get_load_args(env, argv, argc, a, "load(objectPath, flowsMax, execsMax, cgroupRoot)")) {
    free(a);
    return NULL;
  }
  load_log_len = 0;
  load_log[0] = 0;
  struct loaded *l = calloc(1, sizeof *l);
  if (!l) {
    free(a);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  libbpf_print_fn_t old = libbpf_set_print(capture_print);
  const char *stage = "open";
  int err = do_load(l, a, &stage);
  libbpf_set_print(old);
  free(a);
  if (err) {
    free(l);
    napi_throw(env, load_error(env, stage, err));
    return NULL;
  }
  return loaded_result(env, l);
}

/* loadAsync(objectPath, flowsMax, execsMax, cgroupRoot) -> Promise of what load returns: the same work on
 * libuv's thread pool (BTF, the verifier and attaching take tens of milliseconds, much of it waiting). */
struct load_job {
  napi_async_work work;
  napi_deferred deferred;
  struct load_args args;
  struct loaded *l;
  const char *stage;
  int err;
};

static void load_job_execute(napi_env env, void *data) {
  (void)env;
  struct load_job *j = data;
  load_log_len = 0;
  load_log[0] = 0;
  libbpf_print_fn_t old = libbpf_set_print(capture_print);
  j->err = do_load(j->l, &j->args, &j->stage);
  libbpf_set_print(old);
}

static void load_job_complete(napi_env env, napi_status status, void *data) {
  struct load_job *j = data;
  if (status != napi_ok && !j->err) {
    unload(j->l);
    j->err = ECANCELED;
    j->stage = "load";
  }
  if (j->err) {
    free(j->l);
    napi_reject_deferred(env, j->deferred, load_error(env, j->stage, j->err));
  } else {
    napi_value out = loaded_result(env, j->l);
    if (out) napi_resolve_deferred(env, j->deferred, out);
    else {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      napi_reject_deferred(env, j->deferred, e);
    }
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value load_async(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct load_job *j = calloc(1, sizeof *j);
  if (!j || !(j->l = calloc(1, sizeof *j->l))) {
    free(j);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (get_load_args(env, argv, argc, &j->args, "loadAsync(objectPath, flowsMax, execsMax, cgroupRoot)")) {
    free(j->l);
    free(j);
    return NULL;
  }
  j->stage = "open";
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "sluice:bpf-load", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, load_job_execute, load_job_complete, j, &j->work) != napi_ok || napi_queue_async_work(env, j->work) != napi_ok) {
    free(j->l);
    free(j);
    napi_throw_error(env, NULL, "loadAsync: cannot queue the work");
    return NULL;
  }
  return promise;
}

/* close(handle): detaches the programs and frees the maps (also done when the handle is collected). */
static napi_value close_loaded(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "close(handle)");
    return NULL;
  }
  unload((struct loaded *)data);
  return NULL;
}

/* attachCgroup(handle, cgroupPath): attaches the sock_ops programs a load(..., "") left to the cgroup. */
static napi_value attach_cgroup(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  char cgpath[4096];
  size_t cglen = 0;
  if (argc < 2 || napi_get_value_external(env, argv[0], &data) != napi_ok || !data ||
      napi_get_value_string_utf8(env, argv[1], cgpath, sizeof cgpath, &cglen) != napi_ok || cglen == 0 || cglen >= sizeof cgpath - 1) {
    napi_throw_type_error(env, NULL, "attachCgroup(handle, cgroupPath)");
    return NULL;
  }
  struct loaded *l = data;
  if (!l->obj) {
    napi_throw_error(env, "EBADF", "eBPF attach: the probes were closed");
    return NULL;
  }
  load_log_len = 0;
  load_log[0] = 0;
  libbpf_print_fn_t old = libbpf_set_print(capture_print);
  int err = attach_sockops(l, cgpath);
  libbpf_set_print(old);
  if (err) return throw_load(env, "eBPF attach", err);
  return NULL;
}

#endif /* SLUICE_HAVE_LIBBPF */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"load", 0, load, 0, 0, 0, napi_enumerable, 0},
      {"close", 0, close_loaded, 0, 0, 0, napi_enumerable, 0},
      {"attachCgroup", 0, attach_cgroup, 0, 0, 0, napi_enumerable, 0},
      {"loadAsync", 0, load_async, 0, 0, 0, napi_enumerable, 0},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
