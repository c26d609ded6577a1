/*
 * dns_fast: the DNS guard's cache hits, answered on a thread of their own.
 *
 * This is the one place in the native code that reads message contents
 * (sluice_native.c otherwise only makes system calls), and why: a cache hit
 * is a fixed transformation of bytes (copy the question, patch the TTLs)
 * that JavaScript does at a few microseconds and C at well under one; and a
 * thread outside Node's event loop answers while the loop is busy with a
 * garbage collection, a SQLite batch or the collector. Everything that takes
 * a decision stays in TypeScript (src/dns/dns-guard.ts, src/dns/fast-answers.ts):
 * which answers go in the table, until when each may be handed out (a time
 * by which every address it opens is still in the kernel's sets), and when
 * the table empties (a reload, an element taken out of a set). This code
 * only answers the exact question it was given an answer for, before that
 * time, and hands everything else to JavaScript unchanged.
 *
 * The parser accepts a strict subset: a query (QR 0, opcode 0), one
 * question of class IN with an uncompressed name, no answer or authority
 * records, at most one additional record which must be an EDNS(0) OPT with
 * well-formed options, and nothing after it. Anything else goes to
 * JavaScript, which answers it as it answers every query (or refuses it).
 * Every read is bounds-checked against the datagram's length; the parser is
 * fuzzed through dnsFastAnswer (test/unit/dns-fast.test.ts).
 *
 * Exports (added to sluice_native's):
 *   dnsTableOpen(maxEntries)            -> table
 *   dnsTablePut(table, key, template)   -> boolean (false: full, or a bad template)
 *   dnsTableDelete(table, key)          -> boolean
 *   dnsTableClear(table)                -> number of entries removed
 *   dnsTableSize(table)                 -> number
 *   dnsFastStart(fd, table, callback)   -> handle: a thread reading fd
 *        (recvmmsg), answering hits (sendmmsg), and handing batches to
 *        callback(Buffer) on the JS thread, in the UDP framing of
 *        sluice_native.c; byte 6 of a frame's header is 1 for a query that
 *        was answered here (its payload: u32 entry id, then the query).
 *   dnsFastStop(handle)                 -> stats (joins the thread; the fd stays open)
 *   dnsFastStats(handle)                -> { received, answered, forwarded, dropped, sendFailed }
 *   dnsFastAnswer(table, query, nowMs)  -> Buffer | null: the answer the thread
 *        would send for one query (tests and the fuzzer).
 *
 * Key: u16 qtype (big-endian), u8 DO bit, then the question name in wire
 * form with ASCII letters folded to lower case (RFC 4343).
 *
 * Template, little-endian:
 *   u32 id | u8 rcode (0-15) | u8 bits (1: AD) | u16 ancount | u16 nscount |
 *   f64 storedAt (ms since the epoch; TTLs count down from it) |
 *   f64 deadline (ms; answered while now <= deadline) |
 *   u16 nttl | nttl x (u16 offset in body, u32 ttl) |
 *   u16 edeLen | EDNS option bytes (sent when the query has EDNS) |
 *   u16 bodyLen | body: the answer and authority records as they follow the
 *   question in a reply (compression pointers count from the message start,
 *   the question at 12: its wire length is the key's).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_RCVMARK
#define SO_RCVMARK 75
#endif

#define FAST_BATCH 64
#define FAST_RECV 4096      /* a query larger than this goes to JS whole (received in a large slot) */
#define FAST_SLOT 65536
#define FAST_HDR 28
#define FAST_OUT 1232       /* the largest answer sent from here (EDNS's safe size) */
/* Bytes handed to the JS thread and not yet taken (it is paused, or behind): beyond MISS_BUDGET the
 * queries it would answer are dropped (the client asks again); beyond HIT_BUDGET hits are not answered
 * here either, so that every answer sent is reported to JS and recorded (a flood of misses cannot buy
 * unlogged answers). Memory stays bounded whatever the pause. */
#define MISS_BUDGET (16u << 20)
#define HIT_BUDGET (48u << 20)
#define KEY_MAX (3 + 255)
#define TABLE_HARD_MAX (1 << 22)

typedef struct entry {
  struct entry *next;
  uint32_t hash;
  uint16_t keylen;
  uint32_t id;
  uint8_t rcode, bits;
  uint16_t an, ns;
  double stored_at, deadline;
  uint16_t nttl;
  uint16_t *ttl_off;
  uint32_t *ttl;
  uint16_t ede_len;
  uint8_t *ede;
  uint16_t body_len;
  uint8_t *body;
  uint8_t key[]; /* keylen bytes; ttl_off, ttl, ede, body follow in the same allocation */
} entry_t;

typedef struct {
  pthread_mutex_t mu;
  entry_t **buckets;
  size_t nbuckets; /* a power of two */
  size_t count;
  size_t max;
  uint32_t seed;
  int refs; /* the JS object, and each thread using it */
} table_t;

static void table_unref(table_t *t) {
  pthread_mutex_lock(&t->mu);
  int left = --t->refs;
  pthread_mutex_unlock(&t->mu);
  if (left > 0) return;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (entry_t *e = t->buckets[i]; e;) {
      entry_t *n = e->next;
      free(e);
      e = n;
    }
  }
  free(t->buckets);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

/* FNV-1a from a per-table random basis, then a finalizer mixing the seed again: names chosen to share a
 * bucket cannot be computed ahead (the seed comes from getrandom at dnsTableOpen). */
static uint32_t hash_key(uint32_t seed, const uint8_t *k, size_t n) {
  uint32_t h = 2166136261u ^ seed;
  for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 16777619u;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= (h >> 13) ^ seed;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* Caller holds the lock. */
static entry_t **find_slot(table_t *t, const uint8_t *key, size_t n, uint32_t h) {
  entry_t **p = &t->buckets[h & (t->nbuckets - 1)];
  for (; *p; p = &(*p)->next)
    if ((*p)->hash == h && (*p)->keylen == n && memcmp((*p)->key, key, n) == 0) return p;
  return p;
}

static void grow(table_t *t) {
  size_t nb = t->nbuckets * 2;
  entry_t **b = calloc(nb, sizeof *b);
  if (!b) return; /* longer chains, still correct */
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (entry_t *e = t->buckets[i]; e;) {
      entry_t *n = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = n;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
}

static inline uint16_t rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32le(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static inline uint16_t rd16be(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void wr16be(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void wr32be(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static inline double rdf64le(const uint8_t *p) {
  uint64_t u = 0;
  for (int i = 7; i >= 0; i--) u = (u << 8) | p[i];
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* A u16-length-prefixed field of p (n bytes) at *off: its bytes, with *off moved past it; NULL when it runs past n. */
static const uint8_t *length_prefixed(const uint8_t *p, size_t n, size_t *off, uint16_t *len) {
  if (n - *off < 2) return NULL;
  *len = rd16le(p + *off);
  *off += 2;
  if (n - *off < *len) return NULL;
  const uint8_t *at = p + *off;
  *off += *len;
  return at;
}

/* Parses a template into a new entry (key copied in); NULL when it is malformed. */
static entry_t *parse_template(const uint8_t *key, size_t keylen, const uint8_t *p, size_t n) {
  size_t off = 0;
#define NEED(k) do { if (n - off < (size_t)(k)) return NULL; } while (0)
  NEED(4 + 1 + 1 + 2 + 2 + 8 + 8 + 2);
  uint32_t id = rd32le(p);
  uint8_t rcode = p[4], bits = p[5];
  uint16_t an = rd16le(p + 6), ns = rd16le(p + 8);
  double stored = rdf64le(p + 10), deadline = rdf64le(p + 18);
  uint16_t nttl = rd16le(p + 26);
  off = 28;
  if (rcode > 15 || !isfinite(stored) || !isfinite(deadline)) return NULL;
  NEED((size_t)nttl * 6);
  const uint8_t *ttls = p + off;
  off += (size_t)nttl * 6;
#undef NEED
  uint16_t ede_len, body_len;
  const uint8_t *ede = length_prefixed(p, n, &off, &ede_len);
  const uint8_t *body = ede ? length_prefixed(p, n, &off, &body_len) : NULL;
  if (!body || off != n || body_len > FAST_OUT || ede_len > FAST_OUT) return NULL;
  for (uint16_t i = 0; i < nttl; i++) {
    uint16_t o = rd16le(ttls + (size_t)i * 6);
    if ((size_t)o + 4 > body_len) return NULL;
  }
  size_t size = sizeof(entry_t) + keylen + (size_t)nttl * (sizeof(uint16_t) + sizeof(uint32_t)) + ede_len + body_len + 8;
  entry_t *e = calloc(1, size);
  if (!e) return NULL;
  e->keylen = (uint16_t)keylen;
  memcpy(e->key, key, keylen);
  uint8_t *q = e->key + keylen;
  /* u32 array first (aligned by the +8 slack) */
  q = (uint8_t *)(((uintptr_t)q + 7) & ~(uintptr_t)7);
  e->ttl = (uint32_t *)q;
  q += (size_t)nttl * sizeof(uint32_t);
  e->ttl_off = (uint16_t *)q;
  q += (size_t)nttl * sizeof(uint16_t);
  for (uint16_t i = 0; i < nttl; i++) {
    e->ttl_off[i] = rd16le(ttls + (size_t)i * 6);
    e->ttl[i] = rd32le(ttls + (size_t)i * 6 + 2);
  }
  e->ede = q;
  memcpy(q, ede, ede_len);
  q += ede_len;
  e->body = q;
  memcpy(q, body, body_len);
  e->id = id;
  e->rcode = rcode;
  e->bits = bits;
  e->an = an;
  e->ns = ns;
  e->stored_at = stored;
  e->deadline = deadline;
  e->nttl = nttl;
  e->ede_len = ede_len;
  e->body_len = body_len;
  return e;
}

/* What the parser learned of a query it may answer. */
typedef struct {
  uint8_t key[KEY_MAX];
  size_t keylen;
  size_t qend; /* the end of the question (name, type, class) */
  int has_opt;
  int dnssec_ok;
  unsigned limit; /* the largest answer this client takes over UDP */
} query_t;

/* 1 when the datagram is a query this code may answer (see the file's comment), with its key. */
static int parse_query(const uint8_t *p, size_t n, query_t *q) {
  if (n < 12 + 1 + 4 || n > FAST_RECV) return 0;
  if (p[2] & 0x80) return 0;                /* a response */
  if (((p[2] >> 3) & 0xf) != 0) return 0;   /* opcode */
  if (p[2] & 0x02) return 0;                /* TC on a query: odd, JS decides */
  if (rd16be(p + 4) != 1 || rd16be(p + 6) != 0 || rd16be(p + 8) != 0) return 0;
  uint16_t ar = rd16be(p + 10);
  if (ar > 1) return 0;
  size_t i = 12, k = 3;
  for (;;) {
    if (i >= n) return 0;
    uint8_t l = p[i];
    if (l == 0) {
      q->key[k++] = 0;
      i++;
      break;
    }
    if (l > 63) return 0; /* a pointer or a reserved label type */
    if (i + 1 + l >= n || k + 1 + l + 1 > KEY_MAX) return 0;
    q->key[k++] = l;
    for (size_t j = 1; j <= l; j++) {
      uint8_t c = p[i + j];
      q->key[k++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    i += 1 + l;
  }
  if (k - 3 > 255) return 0;
  if (n - i < 4) return 0;
  uint16_t qtype = rd16be(p + i), qclass = rd16be(p + i + 2);
  if (qclass != 1 || qtype == 251 || qtype == 252) return 0;
  i += 4;
  q->qend = i;
  q->has_opt = 0;
  q->dnssec_ok = 0;
  q->limit = 512;
  if (ar == 1) {
    if (n - i < 11 || p[i] != 0 || rd16be(p + i + 1) != 41) return 0;
    uint16_t size = rd16be(p + i + 3);
    if (p[i + 6] != 0) return 0; /* EDNS version: JS answers BADVERS */
    q->dnssec_ok = (p[i + 7] & 0x80) != 0;
    uint16_t rdlen = rd16be(p + i + 9);
    i += 11;
    if (n - i != rdlen) return 0;
    size_t end = i + rdlen;
    while (i < end) {
      if (end - i < 4) return 0;
      uint16_t olen = rd16be(p + i + 2);
      i += 4;
      if (end - i < olen) return 0;
      i += olen;
    }
    q->has_opt = 1;
    q->limit = size < 512 ? 512 : size > 1232 ? 1232 : size;
  } else if (i != n) {
    return 0;
  }
  wr16be(q->key, qtype);
  q->key[2] = (uint8_t)q->dnssec_ok;
  q->keylen = k;
  return 1;
}

/* Builds the answer to `p` from entry `e` at `now` into out (FAST_OUT bytes); its length, or 0 when it does not fit. */
static size_t build_answer(const uint8_t *p, const query_t *q, const entry_t *e, double now, uint8_t *out) {
  size_t size = q->qend + e->body_len + (q->has_opt ? 11u + e->ede_len : 0u);
  if (size > q->limit || size > FAST_OUT) return 0;
  out[0] = p[0];
  out[1] = p[1];
  out[2] = (uint8_t)(0x80 | (p[2] & 0x01));
  int ad = (e->bits & 1) && ((p[3] & 0x20) || q->dnssec_ok);
  out[3] = (uint8_t)(0x80 | (ad ? 0x20 : 0) | (p[3] & 0x10) | (e->rcode & 0xf));
  wr16be(out + 4, 1);
  wr16be(out + 6, e->an);
  wr16be(out + 8, e->ns);
  wr16be(out + 10, q->has_opt ? 1 : 0);
  memcpy(out + 12, p + 12, q->qend - 12);
  uint8_t *b = out + q->qend;
  memcpy(b, e->body, e->body_len);
  /* Whole seconds since the answer arrived, rounded up (as ageSeconds in answer-cache.ts). */
  double secs = now <= e->stored_at ? 0 : ceil((now - e->stored_at) / 1000.0);
  uint32_t age = secs >= 4294967295.0 ? UINT32_MAX : (uint32_t)secs;
  for (uint16_t i = 0; i < e->nttl; i++) wr32be(b + e->ttl_off[i], e->ttl[i] > age ? e->ttl[i] - age : 0);
  if (q->has_opt) {
    uint8_t *o = b + e->body_len;
    o[0] = 0;
    wr16be(o + 1, 41);
    wr16be(o + 3, 1232);
    o[5] = 0;
    o[6] = 0;
    o[7] = q->dnssec_ok ? 0x80 : 0;
    o[8] = 0;
    wr16be(o + 9, e->ede_len);
    memcpy(o + 11, e->ede, e->ede_len);
  }
  return size;
}

/* For intervals (the reports' 1 ms): never steps with the wall clock. */
static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Looks the query up and builds its answer under the lock; returns the length (0: not answered here) and the entry's id. */
static size_t answer_from_table(table_t *t, const uint8_t *p, size_t n, double now, uint8_t *out, uint32_t *id) {
  query_t q;
  if (!parse_query(p, n, &q)) return 0;
  uint32_t h = hash_key(t->seed, q.key, q.keylen);
  size_t len = 0;
  pthread_mutex_lock(&t->mu);
  entry_t *e = *find_slot(t, q.key, q.keylen, h);
  if (e && now <= e->deadline) {
    len = build_answer(p, &q, e, now, out);
    *id = e->id;
  }
  pthread_mutex_unlock(&t->mu);
  return len;
}

/* ---- The thread. */

typedef struct {
  int fd;
  int stopfd;
  table_t *table;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  int started;
  int stopped;
  /* counters (relaxed atomics: read from the JS thread) */
  uint64_t received, answered, forwarded, dropped, send_failed, batches;
  int stopping; /* set (atomically) by fast_stop: the loop ends even while datagrams keep coming */
  uint64_t pending; /* bytes in batches the JS thread has not taken yet */
  int external_gone, tsfn_done; /* both finalizers ran: the memory goes (JS thread only) */
  int released;                 /* fd, buffers and the table reference given back (after the join) */
  int exited;                   /* the thread ended (stopped, or a socket error it cannot go on from) */
  uint64_t errors;
  struct batch *accbuf;         /* the thread's report accumulator, reused (ACC_CAP bytes of frames) */
  /* receive and send areas (the thread's own) */
  struct mmsghdr msgs[FAST_BATCH];
  struct iovec iov[FAST_BATCH];
  struct sockaddr_in6 from[FAST_BATCH];
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(uint32_t))];
  } ctrl[FAST_BATCH];
  uint8_t *data; /* FAST_BATCH * FAST_SLOT */
  struct mmsghdr omsgs[FAST_BATCH];
  struct iovec oiov[FAST_BATCH];
  uint8_t out[FAST_BATCH][FAST_OUT];
} fast_t;

typedef struct batch {
  size_t len;
  uint64_t *pending; /* the thread's counter; touched only while the function delivers (env set) */
  uint8_t data[];
} batch_t;

#define CNT_ADD(f, v) __atomic_add_fetch(&(f), (v), __ATOMIC_RELAXED)
#define CNT_GET(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

static void frame_header(uint8_t *h, unsigned len, const struct sockaddr_in6 *from, uint32_t mark, int hit) {
  memset(h, 0, FAST_HDR);
  h[0] = len & 0xff;
  h[1] = (len >> 8) & 0xff;
  if (from->sin6_family == AF_INET6) {
    uint16_t port = ntohs(from->sin6_port);
    h[2] = port & 0xff;
    h[3] = port >> 8;
    h[4] = 6;
    memcpy(h + 8, &from->sin6_addr, 16);
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)from;
    uint16_t port = ntohs(s4->sin_port);
    h[2] = port & 0xff;
    h[3] = port >> 8;
    h[4] = 4;
    memcpy(h + 8, &s4->sin_addr, 4);
  }
  h[6] = (uint8_t)hit;
  h[24] = mark & 0xff;
  h[25] = (mark >> 8) & 0xff;
  h[26] = (mark >> 16) & 0xff;
  h[27] = (mark >> 24) & 0xff;
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  batch_t *b = data;
  (void)context;
  /* env is NULL when the function is being finalized: the thread's memory may be gone by then
   * (Node runs the finalizer before it empties the queue), so only the batch is freed. */
  if (env && b) __atomic_sub_fetch(b->pending, (uint64_t)b->len, __ATOMIC_RELAXED);
  if (env && cb && b) {
    napi_value buf, recv, result;
    void *dst;
    if (napi_create_buffer_copy(env, b->len, b->data, &dst, &buf) == napi_ok && napi_get_undefined(env, &recv) == napi_ok) {
      napi_status st = napi_call_function(env, recv, cb, 1, &buf, &result);
      if (st == napi_pending_exception) {
        napi_value exc;
        if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
      }
    }
  }
  free(b);
}

/* Reports of hits alone wait up to ACC_MS, or until ACC_FLUSH bytes, to go over together (fewer
 * wake-ups of the JS thread under load); a batch with a query for JS goes at once. ACC_CAP holds
 * the most one recvmmsg can add (64 frames of at most FAST_HDR + 4 + FAST_RECV bytes). */
#define ACC_MS 1.0
#define ACC_FLUSH (64u << 10)
#define ACC_CAP ((size_t)FAST_BATCH * (FAST_HDR + 4 + FAST_RECV) + (ACC_FLUSH))

/* Hands the accumulated frames to the JS thread, in a batch of their exact size (what the budgets
 * count is what is allocated); the accumulator is empty afterwards. */
static napi_status flush_acc(fast_t *f, batch_t *acc) {
  size_t len = acc->len;
  if (len == 0) return napi_ok;
  acc->len = 0;
  batch_t *b = malloc(sizeof *b + len);
  if (!b) return napi_generic_failure;
  b->len = len;
  b->pending = &f->pending;
  memcpy(b->data, acc->data, len);
  CNT_ADD(f->pending, (uint64_t)len);
  napi_status st = napi_call_threadsafe_function(f->tsfn, b, napi_tsfn_nonblocking);
  if (st != napi_ok) {
    __atomic_sub_fetch(&f->pending, (uint64_t)len, __ATOMIC_RELAXED);
    free(b);
  }
  return st;
}

static void *fast_loop(void *arg) {
  fast_t *f = arg;
  batch_t *acc = f->accbuf;
  acc->len = 0;
  double acc_since = 0;
  pthread_setname_np(pthread_self(), "sluice-dnsfast"); /* as top -H and /proc/PID/task show it */
  /* Under load the socket is read again as soon as a batch is done, and poll() is called only when it
   * is empty: one system call fewer per batch, and no sleep between batches that are already waiting. */
  int wait = 1;
  for (;;) {
    if (__atomic_load_n(&f->stopping, __ATOMIC_ACQUIRE)) break;
    if (wait) {
      struct pollfd pf[2] = {{.fd = f->fd, .events = POLLIN}, {.fd = f->stopfd, .events = POLLIN}};
      /* Reports waiting: at most until their time is up (poll counts in whole ms, so 1). */
      int r = poll(pf, 2, acc->len ? 1 : -1);
      if (r == 0) {
        if (flush_acc(f, acc) == napi_closing) break;
        continue;
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (pf[1].revents) break;
      if (pf[0].revents & POLLNVAL) break; /* the fd was closed under the thread: never spin on it */
      if (!(pf[0].revents & (POLLIN | POLLERR))) continue;
    }
    for (int i = 0; i < FAST_BATCH; i++) {
      f->iov[i].iov_base = f->data + (size_t)i * FAST_SLOT;
      f->iov[i].iov_len = FAST_SLOT - 1;
      memset(&f->msgs[i].msg_hdr, 0, sizeof f->msgs[i].msg_hdr);
      f->msgs[i].msg_hdr.msg_iov = &f->iov[i];
      f->msgs[i].msg_hdr.msg_iovlen = 1;
      f->msgs[i].msg_hdr.msg_name = &f->from[i];
      f->msgs[i].msg_hdr.msg_namelen = sizeof f->from[i];
      f->msgs[i].msg_hdr.msg_control = f->ctrl[i].buf;
      f->msgs[i].msg_hdr.msg_controllen = sizeof f->ctrl[i].buf;
    }
    int n = recvmmsg(f->fd, f->msgs, FAST_BATCH, MSG_DONTWAIT, NULL);
    wait = n <= 0;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOMEM) {
      /* The socket is unusable (closed or replaced under the thread): end, visibly (running: false). */
      CNT_ADD(f->errors, 1);
      break;
    }
    if (n <= 0) continue;
    CNT_ADD(f->received, (uint64_t)n);
    CNT_ADD(f->batches, 1);
    double now = now_ms();
    uint64_t pending = CNT_GET(f->pending);
    int may_answer = pending < HIT_BUDGET, may_forward = pending < MISS_BUDGET;
    /* Per datagram: 0 dropped, 1 answered here (reported), 2 handed over whole, 3 handed over as
     * truncated without its bytes (cut short, or over FAST_RECV: no DNS query over UDP is that large;
     * JS counts it and drops it). */
    int kind[FAST_BATCH];
    uint32_t ids[FAST_BATCH];
    size_t total = 0;
    int nout = 0, nfwd = 0, ndrop = 0;
    for (int i = 0; i < n; i++) {
      size_t len = f->msgs[i].msg_len;
      int trunc = (f->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
      size_t olen = 0;
      if (!trunc && may_answer) olen = answer_from_table(f->table, f->iov[i].iov_base, len, now, f->out[nout], &ids[i]);
      if (olen) {
        memset(&f->omsgs[nout], 0, sizeof f->omsgs[nout]);
        f->oiov[nout].iov_base = f->out[nout];
        f->oiov[nout].iov_len = olen;
        f->omsgs[nout].msg_hdr.msg_iov = &f->oiov[nout];
        f->omsgs[nout].msg_hdr.msg_iovlen = 1;
        f->omsgs[nout].msg_hdr.msg_name = &f->from[i];
        f->omsgs[nout].msg_hdr.msg_namelen = f->msgs[i].msg_hdr.msg_namelen;
        nout++;
        kind[i] = 1;
        total += FAST_HDR + 4 + len;
      } else if (!may_forward || !may_answer) {
        kind[i] = 0;
        ndrop++;
      } else if (trunc || len > FAST_RECV) {
        kind[i] = 3;
        nfwd++;
        total += FAST_HDR;
      } else {
        kind[i] = 2;
        nfwd++;
        total += FAST_HDR + len;
      }
    }
    /* The report is written before the answers leave: an answer without room for its report is not
     * sent. Reports go to JS within ACC_MS (a batch with a query for JS flushes them at once). */
    if (acc->len + total > ACC_CAP && flush_acc(f, acc) == napi_closing) break;
    if (total > 0 && acc->len == 0) acc_since = mono_ms();
    if (total > 0) {
      napi_status st = napi_generic_failure;
      {
        batch_t *b = acc;
        uint8_t *o = b->data + b->len;
        b->len += total;
        for (int i = 0; i < n; i++) {
          if (kind[i] == 0) continue;
          struct msghdr *h = &f->msgs[i].msg_hdr;
          uint32_t mark = 0;
          for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_MARK && c->cmsg_len >= CMSG_LEN(sizeof mark)) memcpy(&mark, CMSG_DATA(c), sizeof mark);
          size_t len = f->msgs[i].msg_len;
          if (kind[i] == 1) {
            frame_header(o, (unsigned)(4 + len), &f->from[i], mark, 1);
            o[FAST_HDR] = ids[i] & 0xff;
            o[FAST_HDR + 1] = (ids[i] >> 8) & 0xff;
            o[FAST_HDR + 2] = (ids[i] >> 16) & 0xff;
            o[FAST_HDR + 3] = (ids[i] >> 24) & 0xff;
            memcpy(o + FAST_HDR + 4, f->iov[i].iov_base, len);
            o += FAST_HDR + 4 + len;
          } else if (kind[i] == 3) {
            frame_header(o, 0, &f->from[i], mark, 0);
            o[5] = 1;
            o += FAST_HDR;
          } else {
            frame_header(o, (unsigned)len, &f->from[i], mark, 0);
            memcpy(o + FAST_HDR, f->iov[i].iov_base, len);
            o += FAST_HDR + len;
          }
        }
        st = napi_ok;
        if (nfwd > 0 || acc->len >= ACC_FLUSH || mono_ms() - acc_since >= ACC_MS) st = flush_acc(f, acc);
      }
      if (st != napi_ok) {
        /* Nothing reported: nothing answered, nothing handed over. */
        CNT_ADD(f->dropped, (uint64_t)n);
        if (st == napi_closing) break;
        continue;
      }
    }
    CNT_ADD(f->dropped, (uint64_t)ndrop);
    CNT_ADD(f->forwarded, (uint64_t)nfwd);
    int done = 0, sent = 0;
    while (done < nout) {
      int r2 = sendmmsg(f->fd, f->omsgs + done, (unsigned)(nout - done), MSG_DONTWAIT);
      if (r2 < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          CNT_ADD(f->send_failed, (uint64_t)(nout - done));
          break;
        }
        CNT_ADD(f->send_failed, 1);
        done++;
        continue;
      }
      done += r2;
      sent += r2;
    }
    CNT_ADD(f->answered, (uint64_t)sent);
    /* Reports never wait past ACC_MS, even while every datagram of a flood is dropped. */
    if (acc->len && mono_ms() - acc_since >= ACC_MS && flush_acc(f, acc) == napi_closing) break;
  }
  /* Stopping: what was answered is still reported (the function is released only after the join). */
  (void)flush_acc(f, acc);
  __atomic_store_n(&f->exited, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* ---- Node-API surface. */

static void table_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  table_unref(data);
}

/* Each handle is tagged with its kind: a table is never taken for a thread's handle, or the reverse. */
static const napi_type_tag TABLE_TAG = {0x736c75696365dbf1ULL, 0x7461626c65000001ULL};
static const napi_type_tag FAST_TAG = {0x736c75696365dbf1ULL, 0x7468726561640002ULL};

static void *tagged_external(napi_env env, napi_value v, const napi_type_tag *tag) {
  void *p = NULL;
  bool ok = false;
  if (napi_check_object_type_tag(env, v, tag, &ok) != napi_ok || !ok) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static table_t *table_arg(napi_env env, napi_value v) { return tagged_external(env, v, &TABLE_TAG); }

static napi_value js_table_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t max = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &max) != napi_ok || max < 1 || max > TABLE_HARD_MAX) {
    napi_throw_type_error(env, "EINVAL", "dnsTableOpen(maxEntries): an integer from 1 to 4194304");
    return NULL;
  }
  table_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->nbuckets = 1024;
  t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
  if (!t->buckets) {
    free(t);
    napi_throw_error(env, "ENOMEM", "dnsTableOpen: out of memory");
    return NULL;
  }
  pthread_mutex_init(&t->mu, NULL);
  if (getrandom(&t->seed, sizeof t->seed, 0) != sizeof t->seed) t->seed = (uint32_t)now_ms() ^ (uint32_t)(uintptr_t)t;
  t->max = (size_t)max;
  t->refs = 1;
  napi_value out;
  if (napi_create_external(env, t, table_finalize, NULL, &out) != napi_ok) {
    table_unref(t);
    return NULL;
  }
  napi_type_tag_object(env, out, &TABLE_TAG);
  return out;
}

static int buffer_arg(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

static napi_value make_bool(napi_env env, int b) {
  napi_value r;
  napi_get_boolean(env, b != 0, &r);
  return r;
}

static napi_value make_num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static int key_ok(const uint8_t *k, size_t n) { return n >= 4 && n <= KEY_MAX; }

static napi_value js_table_put(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *key, *tmpl;
  size_t klen, tlen;
  table_t *t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || !(t = table_arg(env, argv[0])) || !buffer_arg(env, argv[1], &key, &klen) ||
      !buffer_arg(env, argv[2], &tmpl, &tlen) || !key_ok(key, klen)) {
    napi_throw_type_error(env, "EINVAL", "dnsTablePut(table, key, template): a table and two Buffers (a key of 4 to 258 bytes)");
    return NULL;
  }
  entry_t *e = parse_template(key, klen, tmpl, tlen);
  if (!e) return make_bool(env, 0);
  e->hash = hash_key(t->seed, key, klen);
  pthread_mutex_lock(&t->mu);
  entry_t **slot = find_slot(t, key, klen, e->hash);
  int ok = 1;
  if (*slot) {
    entry_t *old = *slot;
    e->next = old->next;
    *slot = e;
    free(old);
  } else if (t->count >= t->max) {
    ok = 0;
    free(e);
  } else {
    *slot = e;
    t->count++;
    if (t->count > t->nbuckets) grow(t);
  }
  pthread_mutex_unlock(&t->mu);
  return make_bool(env, ok);
}

static napi_value js_table_delete(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *key;
  size_t klen;
  table_t *t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !(t = table_arg(env, argv[0])) || !buffer_arg(env, argv[1], &key, &klen)) {
    napi_throw_type_error(env, "EINVAL", "dnsTableDelete(table, key): a table and a Buffer");
    return NULL;
  }
  if (!key_ok(key, klen)) return make_bool(env, 0);
  uint32_t h = hash_key(t->seed, key, klen);
  pthread_mutex_lock(&t->mu);
  entry_t **slot = find_slot(t, key, klen, h);
  entry_t *e = *slot;
  if (e) {
    *slot = e->next;
    t->count--;
  }
  pthread_mutex_unlock(&t->mu);
  free(e);
  return make_bool(env, e != NULL);
}

/* The table of a function whose one argument is a table; throws `usage` otherwise. */
static table_t *only_table_arg(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  table_t *t = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !(t = table_arg(env, argv[0]))) napi_throw_type_error(env, "EINVAL", usage);
  return t;
}

static napi_value js_table_clear(napi_env env, napi_callback_info info) {
  table_t *t = only_table_arg(env, info, "dnsTableClear(table)");
  if (!t) return NULL;
  entry_t *all = NULL;
  pthread_mutex_lock(&t->mu);
  size_t n = t->count;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (entry_t *e = t->buckets[i]; e;) {
      entry_t *next = e->next;
      e->next = all;
      all = e;
      e = next;
    }
    t->buckets[i] = NULL;
  }
  t->count = 0;
  pthread_mutex_unlock(&t->mu);
  while (all) {
    entry_t *next = all->next;
    free(all);
    all = next;
  }
  return make_num(env, (double)n);
}

static napi_value js_table_size(napi_env env, napi_callback_info info) {
  table_t *t = only_table_arg(env, info, "dnsTableSize(table)");
  if (!t) return NULL;
  pthread_mutex_lock(&t->mu);
  size_t n = t->count;
  pthread_mutex_unlock(&t->mu);
  return make_num(env, (double)n);
}

static napi_value js_fast_answer(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *q;
  size_t qlen;
  double now;
  table_t *t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || !(t = table_arg(env, argv[0])) || !buffer_arg(env, argv[1], &q, &qlen) ||
      napi_get_value_double(env, argv[2], &now) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "dnsFastAnswer(table, query, nowMs)");
    return NULL;
  }
  uint8_t out[FAST_OUT];
  uint32_t id = 0;
  size_t len = answer_from_table(t, q, qlen, now, out, &id);
  napi_value r;
  if (!len) {
    napi_get_null(env, &r);
    return r;
  }
  void *dst;
  if (napi_create_buffer_copy(env, len, out, &dst, &r) != napi_ok) return NULL;
  return r;
}

static napi_value fast_stats_obj(napi_env env, fast_t *f) {
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "received", make_num(env, (double)CNT_GET(f->received)));
  napi_set_named_property(env, o, "answered", make_num(env, (double)CNT_GET(f->answered)));
  napi_set_named_property(env, o, "forwarded", make_num(env, (double)CNT_GET(f->forwarded)));
  napi_set_named_property(env, o, "dropped", make_num(env, (double)CNT_GET(f->dropped)));
  napi_set_named_property(env, o, "sendFailed", make_num(env, (double)CNT_GET(f->send_failed)));
  napi_set_named_property(env, o, "batches", make_num(env, (double)CNT_GET(f->batches)));
  napi_set_named_property(env, o, "errors", make_num(env, (double)CNT_GET(f->errors)));
  napi_set_named_property(env, o, "running", make_bool(env, !f->stopped && !__atomic_load_n(&f->exited, __ATOMIC_ACQUIRE)));
  return o;
}

static void fast_stop(fast_t *f) {
  if (f->stopped) return;
  f->stopped = 1;
  __atomic_store_n(&f->stopping, 1, __ATOMIC_RELEASE);
  uint64_t one = 1;
  if (write(f->stopfd, &one, sizeof one) < 0) { /* the thread still sees POLLIN on a counter above 0 */ }
  pthread_join(f->thread, NULL);
  napi_release_threadsafe_function(f->tsfn, napi_tsfn_release);
}

/* After the join: the eventfd, the buffers and the table reference go back (once). */
static void fast_release(fast_t *f) {
  if (f->released) return;
  f->released = 1;
  close(f->stopfd);
  free(f->data);
  f->data = NULL;
  free(f->accbuf);
  f->accbuf = NULL;
  if (f->table) table_unref(f->table);
  f->table = NULL;
}

/* The environment ends without dnsFastStop (a worker terminated): the same as a stop. */
static void fast_cleanup_hook(void *arg) {
  fast_stop(arg);
  fast_release(arg);
}

/* The handle was collected. Its memory goes once the threadsafe function is finalized too (queued
 * batches point at its counter); a running thread keeps the function, so it keeps the memory. */
static void fast_finalize(napi_env env, void *data, void *hint) {
  fast_t *f = data;
  (void)env;
  (void)hint;
  f->external_gone = 1;
  if (f->tsfn_done) free(f);
}

/* The threadsafe function is finalized (released after the join, every queued batch delivered or freed). */
static void fast_tsfn_finalize(napi_env env, void *data, void *hint) {
  fast_t *f = data;
  (void)env;
  (void)hint;
  f->tsfn_done = 1;
  if (f->external_gone) free(f);
}

static napi_value js_fast_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  table_t *t;
  napi_valuetype ty;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      !(t = table_arg(env, argv[1])) || napi_typeof(env, argv[2], &ty) != napi_ok || ty != napi_function) {
    napi_throw_type_error(env, "EINVAL", "dnsFastStart(fd, table, callback)");
    return NULL;
  }
  fast_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->data = malloc((size_t)FAST_BATCH * FAST_SLOT);
  f->accbuf = malloc(sizeof(batch_t) + ACC_CAP);
  f->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!f->data || !f->accbuf || f->stopfd < 0) {
    if (f->stopfd >= 0) close(f->stopfd);
    free(f->data);
    free(f->accbuf);
    free(f);
    napi_throw_error(env, "ENOMEM", "dnsFastStart: out of memory or file descriptors");
    return NULL;
  }
  f->fd = fd;
  f->table = t;
  napi_value name;
  napi_create_string_utf8(env, "sluice.dnsfast", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, f, fast_tsfn_finalize, NULL, call_js, &f->tsfn) != napi_ok) {
    close(f->stopfd);
    free(f->data);
    free(f->accbuf);
    free(f);
    napi_throw_error(env, "ESLUICENAPI", "dnsFastStart: napi_create_threadsafe_function failed");
    return NULL;
  }
  /* The listener keeps no process alive on its own (the daemon stops it). */
  napi_unref_threadsafe_function(env, f->tsfn);
  pthread_mutex_lock(&t->mu);
  t->refs++;
  pthread_mutex_unlock(&t->mu);
  int rc = pthread_create(&f->thread, NULL, fast_loop, f);
  if (rc != 0) {
    fast_release(f);
    f->stopped = 1;
    /* The memory goes with the threadsafe function's finalizer (no handle will ever exist). */
    f->external_gone = 1;
    napi_release_threadsafe_function(f->tsfn, napi_tsfn_abort);
    napi_throw_error(env, "ESYSCALL", "dnsFastStart: pthread_create failed");
    return NULL;
  }
  f->started = 1;
  napi_value out;
  if (napi_create_external(env, f, fast_finalize, NULL, &out) != napi_ok || napi_type_tag_object(env, out, &FAST_TAG) != napi_ok) {
    /* No handle to stop it with: stopped here; the memory goes with the function's finalizer. */
    fast_stop(f);
    fast_release(f);
    f->external_gone = 1;
    napi_throw_error(env, "ESLUICENAPI", "dnsFastStart: napi_create_external failed");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, fast_cleanup_hook, f);
  return out;
}

static fast_t *fast_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *p = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !(p = tagged_external(env, argv[0], &FAST_TAG))) {
    napi_throw_type_error(env, "EINVAL", "a dnsFastStart handle expected");
    return NULL;
  }
  return p;
}

/* Stops the thread (joins it) and returns its counters; the handle stays valid for dnsFastStats. Memory is freed at the environment's end. */
static napi_value js_fast_stop(napi_env env, napi_callback_info info) {
  fast_t *f = fast_arg(env, info);
  if (!f) return NULL;
  if (!f->stopped) {
    fast_stop(f);
    napi_remove_env_cleanup_hook(env, fast_cleanup_hook, f);
    fast_release(f);
  }
  return fast_stats_obj(env, f);
}

static napi_value js_fast_stats(napi_env env, napi_callback_info info) {
  fast_t *f = fast_arg(env, info);
  if (!f) return NULL;
  return fast_stats_obj(env, f);
}

void sluice_dns_fast_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"dnsTableOpen", 0, js_table_open, 0, 0, 0, napi_enumerable, 0},
      {"dnsTablePut", 0, js_table_put, 0, 0, 0, napi_enumerable, 0},
      {"dnsTableDelete", 0, js_table_delete, 0, 0, 0, napi_enumerable, 0},
      {"dnsTableClear", 0, js_table_clear, 0, 0, 0, napi_enumerable, 0},
      {"dnsTableSize", 0, js_table_size, 0, 0, 0, napi_enumerable, 0},
      {"dnsFastAnswer", 0, js_fast_answer, 0, 0, 0, napi_enumerable, 0},
      {"dnsFastStart", 0, js_fast_start, 0, 0, 0, napi_enumerable, 0},
      {"dnsFastStop", 0, js_fast_stop, 0, 0, 0, napi_enumerable, 0},
      {"dnsFastStats", 0, js_fast_stats, 0, 0, 0, napi_enumerable, 0},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
