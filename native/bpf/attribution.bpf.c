// SPDX-License-Identifier: GPL-2.0
/*
 * Sluice's attribution probes: who sent a packet, captured in the kernel in
 * the sender's own context, so it is known after the sender has exited.
 * Nothing here decides anything: every program returns without touching the
 * packet (the sock_ops program returns 1, "carry on"), and enforcement stays
 * in nftables.
 *
 *  - sockops BPF_SOCK_OPS_TCP_CONNECT_CB (attached to the cgroup2 root; inside
 *    tcp_connect, in the connecting task's own context, after the source
 *    port is chosen, before the SYN leaves): the task, read with
 *    bpf_get_current_task_btf, under the flow key (network namespace,
 *    family, source port, destination address and port; TCP sockets share
 *    a source port across destinations). One program, one map write.
 *    Before this, tp_btf/inet_sock_set_state took the task at SYN-SENT (the
 *    port not chosen yet) into a map the sock_ops program moved it from:
 *    that tracepoint runs on every state change of every TCP socket, both
 *    ends of every connection, about 7 runs a connect, and the move cost a
 *    map update, a lookup and a delete. Measured with the kernel's own BPF
 *    statistics (bench/probe-cost.ts): 1.8 us of probe time a connect
 *    before, 1.2 us after, most of it now the kernel calling the sock_ops
 *    program for its other callbacks (9 a connection, both ends).
 *  - tp_btf/sock_send_length (every sendmsg, after it returns, in the
 *    sender's context): for UDP, the sending task by the socket's source
 *    port, connected or not; the value keeps the connected peer if any.
 *  - tp_btf/sched_process_exec: the path given to execve and the command
 *    line of each program started, per tgid, kept after it exits (LRU).
 *
 * Why not fentry/kprobes on tcp_connect and udp_sendmsg: they see the same
 * with one program each, but neither is available everywhere: this
 * project's CI kernel refuses fentry and LSM programs with EPERM while it
 * loads tracepoints and cgroup programs, and is built without kprobes
 * (CONFIG_KPROBES off). Tracepoints are a stable interface; sock_ops is attached to the root
 * cgroup, so it sees every process, containers included.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMPV6 58 /* a #define in the uapi headers, not in vmlinux.h */
#define ARGS_MAX 512
#define PATH_MAX_ 256

/* Keep in step with src/monitor/kernel-attribution.ts (the layouts are asserted below). */
struct flow_key {
	__u64 netns;   /* the socket's network namespace cookie (SO_NETNS_COOKIE) */
	__u8 family;   /* 4 or 6: the packet's (an IPv6 socket sending to a v4-mapped address sends IPv4) */
	__u8 proto;    /* 6, 17, or 1 / 58 (echo requests from a ping socket) */
	__u16 sport;   /* host order */
	__u16 dport;   /* host order; 0 in UDP keys */
	__u16 pad;
	__u8 daddr[16]; /* IPv4 in the first 4 bytes; zero in UDP keys */
};

struct sender {
	__u64 ts;      /* bpf_ktime_get_boot_ns() at the capture */
	__u64 start;   /* the thread group leader's start_boottime: tgid + start name one process */
	__u64 cgroup;  /* the sender's cgroup v2 id */
	__u32 tgid;
	__u32 pid;
	__u32 uid;     /* the sender's (real) uid */
	__u32 gid;
	__u32 sk_uid;  /* the socket's owner (what NFLOG reports) */
	__u16 dport;   /* the connected peer (0 for an unconnected UDP socket) */
	__u8 family;
	__u8 proto;
	__u8 daddr[16];
	char comm[16];
};

struct exec_info {
	__u64 start;   /* leader start_boottime, as in struct sender */
	__u64 ts;      /* when it exec'd (boot ns) */
	__u32 ppid;
	__u32 uid;
	__u16 path_len;
	__u16 args_len; /* bytes of args, NUL-separated as in /proc/PID/cmdline */
	__u32 pad;
	char path[PATH_MAX_];
	char args[ARGS_MAX];
};

_Static_assert(sizeof(struct flow_key) == 32, "flow_key layout");
_Static_assert(__builtin_offsetof(struct flow_key, family) == 8, "flow_key layout");
_Static_assert(__builtin_offsetof(struct flow_key, daddr) == 16, "flow_key layout");
_Static_assert(sizeof(struct sender) == 80, "sender layout");
_Static_assert(__builtin_offsetof(struct sender, tgid) == 24, "sender layout");
_Static_assert(__builtin_offsetof(struct sender, sk_uid) == 40, "sender layout");
_Static_assert(__builtin_offsetof(struct sender, dport) == 44, "sender layout");
_Static_assert(__builtin_offsetof(struct sender, daddr) == 48, "sender layout");
_Static_assert(__builtin_offsetof(struct sender, comm) == 64, "sender layout");
_Static_assert(sizeof(struct exec_info) == 800, "exec_info layout");
_Static_assert(__builtin_offsetof(struct exec_info, path_len) == 24, "exec_info layout");
_Static_assert(__builtin_offsetof(struct exec_info, path) == 32, "exec_info layout");
_Static_assert(__builtin_offsetof(struct exec_info, args) == 288, "exec_info layout");

/* Counters, per CPU: see src/monitor/kernel-attribution.ts PROBE_STATS. */
enum { STAT_CAPTURED, STAT_UNCHANGED, STAT_EXECS, STAT_ARGS_UNREAD, STAT_CONNECT_UNKNOWN, STAT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* set by the loader */
	__type(key, struct flow_key);
	__type(value, struct sender);
} flows SEC(".maps");


struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* set by the loader */
	__type(key, __u32);
	__type(value, struct exec_info);
} execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Scratch for building an exec record (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_info);
} exec_scratch SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* The peer of v's flow; an IPv4-mapped IPv6 peer is IPv4 (those packets are IPv4). `addr` holds 4 or 16 bytes. */
static __always_inline void set_peer(struct sender *v, __u16 family, const __u32 *addr, __u16 dport)
{
	v->dport = dport;
	__builtin_memset(v->daddr, 0, 16);
	if (family == AF_INET) {
		v->family = 4;
		__builtin_memcpy(v->daddr, addr, 4);
	} else if (addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0xffff)) {
		v->family = 4;
		__builtin_memcpy(v->daddr, &addr[3], 4);
	} else {
		v->family = 6;
		__builtin_memcpy(v->daddr, addr, 16);
	}
}

/* The current task as a sender on socket sk; the peer from the socket (zero when unconnected). */
static __always_inline void fill_sender(struct sender *v, struct sock *sk, __u8 proto)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	__u32 addr[4] = {};

	v->ts = bpf_ktime_get_boot_ns();
	v->start = BPF_CORE_READ(task, group_leader, start_boottime);
	v->cgroup = bpf_get_current_cgroup_id();
	v->tgid = pid_tgid >> 32;
	v->pid = (__u32)pid_tgid;
	v->uid = (__u32)uid_gid;
	v->gid = uid_gid >> 32;
	v->sk_uid = BPF_CORE_READ(sk, sk_uid.val);
	v->proto = proto;
	bpf_get_current_comm(v->comm, sizeof(v->comm));
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET)
		addr[0] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	else
		BPF_CORE_READ_INTO(&addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	set_peer(v, family, addr, bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)));
}

static __always_inline int same_sender(const struct sender *a, const struct sender *b)
{
	if (a->tgid != b->tgid || a->pid != b->pid || a->uid != b->uid || a->start != b->start || a->cgroup != b->cgroup ||
	    a->dport != b->dport || a->sk_uid != b->sk_uid)
		return 0;
	for (int i = 0; i < 16; i++)
		if (a->daddr[i] != b->daddr[i])
			return 0;
	return 1;
}

/* Writes v under key unless the same sender was written there in the last second. */
static __always_inline void put_flow(struct flow_key *key, struct sender *v)
{
	struct sender *old = bpf_map_lookup_elem(&flows, key);
	if (old && same_sender(old, v) && v->ts - old->ts < 1000000000ULL) {
		count(STAT_UNCHANGED);
		return;
	}
	bpf_map_update_elem(&flows, key, v, BPF_ANY);
	count(STAT_CAPTURED);
}

SEC("sockops")
int tcp_connect_cb(struct bpf_sock_ops *ctx)
{
	if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	/* tcp_connect runs inside connect() (or a sendto with MSG_FASTOPEN), in the caller's context:
	 * the current task is the connecting one (a kernel thread's own connects name the thread). */
	struct task_struct *task = bpf_get_current_task_btf();
	struct bpf_sock *bsk = ctx->sk;
	struct tcp_sock *tp = bsk ? bpf_skc_to_tcp_sock(bsk) : 0;
	if (!tp) {
		count(STAT_CONNECT_UNKNOWN);
		return 1;
	}
	struct sender sv = {};
	struct sender *v = &sv;
	v->ts = bpf_ktime_get_boot_ns();
	v->start = BPF_CORE_READ(task, group_leader, start_boottime);
	v->cgroup = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	v->tgid = BPF_CORE_READ(task, tgid);
	v->pid = BPF_CORE_READ(task, pid);
	v->uid = BPF_CORE_READ(task, cred, uid.val);
	v->gid = BPF_CORE_READ(task, cred, gid.val);
	v->sk_uid = BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_uid.val);
	v->proto = IPPROTO_TCP;
	BPF_CORE_READ_INTO(&v->comm, task, comm);
	/* The peer as tcp_v4/v6_connect set it. Every field is read at its own constant offset before
	 * any branch: the verifier refuses the computed context pointer clang makes of a field chosen
	 * by a branch. */
	__u32 family = ctx->family;
	__u32 ip4 = ctx->remote_ip4;
	__u32 addr[4] = { ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2], ctx->remote_ip6[3] };
	asm volatile("" : "+r"(ip4), "+r"(addr[0]));
	if (family == AF_INET)
		addr[0] = ip4;
	set_peer(v, (__u16)family, addr, bpf_ntohl(ctx->remote_port) & 0xffff);
	struct flow_key key = {};
	key.netns = bpf_get_netns_cookie(ctx);
	key.family = v->family;
	key.proto = IPPROTO_TCP;
	key.sport = (__u16)ctx->local_port;
	key.dport = v->dport;
	__builtin_memcpy(key.daddr, v->daddr, 16);
	put_flow(&key, v);
	return 1;
}

/*
 * Every send on a socket: UDP, keyed by the local port; and ICMP or ICMPv6
 * echo requests from a ping socket (SOCK_DGRAM, what `ping` uses where
 * net.ipv4.ping_group_range lets it), keyed by the socket's identifier, which
 * the kernel writes into every echo request it sends (the collector reads it
 * back from the logged packet). Raw sockets are not keyed: their identifier
 * is in the payload.
 */
SEC("tp_btf/sock_send_length")
int BPF_PROG(udp_sent, struct sock *sk, int ret, int flags)
{
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_UDP && !((proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) && BPF_CORE_READ(sk, sk_type) == SOCK_DGRAM))
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct flow_key key = {};
	struct sender v = {};
	fill_sender(&v, sk, (__u8)proto);
	key.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
	key.proto = (__u8)proto;
	key.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	key.family = family == AF_INET ? 4 : 6;
	put_flow(&key, &v);
	if (proto != IPPROTO_UDP)
		return 0;
	/* A dual-stack IPv6 socket also sends IPv4 (to v4-mapped addresses) from the same port. */
	if (family == AF_INET6 && !BPF_CORE_READ_BITFIELD_PROBED(&sk->__sk_common, skc_ipv6only)) {
		key.family = 4;
		put_flow(&key, &v);
	}
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct exec_info *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!e)
		return 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);
	e->start = BPF_CORE_READ(p, group_leader, start_boottime);
	e->ts = bpf_ktime_get_boot_ns();
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->pad = 0;

	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename);
	e->path_len = n > 0 ? n - 1 : 0;

	unsigned long arg_start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(p, mm, arg_end);
	unsigned long len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > ARGS_MAX - 1)
		len = ARGS_MAX - 1;
	len &= ARGS_MAX - 1; /* a no-op after the clamp; it gives the verifier its bound */
	e->args_len = 0;
	if (len > 0) {
		if (bpf_probe_read_user(e->args, len, (void *)arg_start) == 0)
			e->args_len = len;
		else
			count(STAT_ARGS_UNREAD);
	}
	bpf_map_update_elem(&execs, &tgid, e, BPF_ANY);
	count(STAT_EXECS);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
