/**
 * Netlink and nf_tables constants, from the kernel UAPI headers
 * (linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h).
 * Attribute enums start at 0 (UNSPEC); values here are the kernel's.
 */

export const NETLINK_NETFILTER = 12;
export const NETLINK_SOCK_DIAG = 4;
export const SOL_NETLINK = 270;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const NETLINK_NO_ENOBUFS = 5;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const SOL_SOCKET = 1;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ECHO = 0x8;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
/** Set by the kernel on error messages that carry extended-ack TLVs. */
export const NLM_F_ACK_TLVS = 0x200;
export const NLM_F_CAPPED = 0x100;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

export const NLA_F_NESTED = 0x8000;
export const NLA_TYPE_MASK = 0x3fff;

export const NFNL_SUBSYS_ULOG = 4;
export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 16;
export const NFNL_MSG_BATCH_END = 17;
export const NFNLGRP_NFTABLES = 7;

export const NFPROTO_UNSPEC = 0;
export const NFPROTO_INET = 1;
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;

export const MSG = {
  NEWTABLE: 0,
  GETTABLE: 1,
  DELTABLE: 2,
  NEWCHAIN: 3,
  GETCHAIN: 4,
  DELCHAIN: 5,
  NEWRULE: 6,
  GETRULE: 7,
  DELRULE: 8,
  NEWSET: 9,
  GETSET: 10,
  DELSET: 11,
  NEWSETELEM: 12,
  GETSETELEM: 13,
  DELSETELEM: 14,
  NEWGEN: 15,
  GETGEN: 16,
  NEWOBJ: 18,
  GETOBJ: 19,
  DELOBJ: 20,
  GETOBJ_RESET: 21,
} as const;

export const TABLE = { NAME: 1, FLAGS: 2, USE: 3, HANDLE: 4, USERDATA: 6, OWNER: 7 } as const;
/** Table flags (Linux 6.9+ for persist): dormant filters nothing; owner: only the creating netlink socket may change it; persist: it outlives that socket. */
export const TABLE_F = { DORMANT: 0x1, OWNER: 0x2, PERSIST: 0x4 } as const;
export const CHAIN = { TABLE: 1, HANDLE: 2, NAME: 3, HOOK: 4, POLICY: 5, USE: 6, TYPE: 7, COUNTERS: 8, FLAGS: 10, ID: 11, USERDATA: 12 } as const;
export const HOOK = { HOOKNUM: 1, PRIORITY: 2 } as const;
export const RULE = { TABLE: 1, CHAIN: 2, HANDLE: 3, EXPRESSIONS: 4, POSITION: 6, USERDATA: 7, ID: 9 } as const;
export const SET = {
  TABLE: 1,
  NAME: 2,
  FLAGS: 3,
  KEY_TYPE: 4,
  KEY_LEN: 5,
  DATA_TYPE: 6,
  DATA_LEN: 7,
  POLICY: 8,
  DESC: 9,
  ID: 10,
  TIMEOUT: 11,
  GC_INTERVAL: 12,
  USERDATA: 13,
  HANDLE: 16,
} as const;
export const SET_DESC = { SIZE: 1, CONCAT: 2 } as const;
export const SET_FIELD_LEN = 1;
export const SET_ELEM = { KEY: 1, DATA: 2, FLAGS: 3, TIMEOUT: 4, EXPIRATION: 5, USERDATA: 6, KEY_END: 10 } as const;
export const SET_ELEM_LIST = { TABLE: 1, SET: 2, ELEMENTS: 3, SET_ID: 4 } as const;
export const LIST_ELEM = 1;
export const DATA = { VALUE: 1, VERDICT: 2 } as const;
export const VERDICT = { CODE: 1, CHAIN: 2 } as const;
export const EXPR = { NAME: 1, DATA: 2 } as const;
export const OBJ = { TABLE: 1, NAME: 2, TYPE: 3, DATA: 4, USE: 5, HANDLE: 6, USERDATA: 8 } as const;
export const GEN_ID = 1;

export const SET_F = { ANONYMOUS: 0x1, CONSTANT: 0x2, INTERVAL: 0x4, MAP: 0x8, TIMEOUT: 0x10, EVAL: 0x20, OBJECT: 0x40, CONCAT: 0x80 } as const;
export const SET_ELEM_F_INTERVAL_END = 0x1;
/** NFT_SET_ELEM_CATCHALL: the element that matches every key (Linux 5.13+; `nft add element ... { * }`). */
export const SET_ELEM_F_CATCHALL = 0x2;

export const OBJECT_COUNTER = 1;
export const OBJECT_LIMIT = 4;

export const HOOKNUM = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;

export const NF_DROP = 0;
export const NF_ACCEPT = 1;
export const NFT_CONTINUE = -1;
export const NFT_BREAK = -2;
export const NFT_JUMP = -3;
export const NFT_GOTO = -4;
export const NFT_RETURN = -5;

export const REG_VERDICT = 0;
/** Legacy 128-bit register 1; shares storage with 32-bit registers 8..11. */
export const REG_1 = 1;
/** 32-bit register 9: the second field of a concatenation. */
export const REG32_01 = 9;
/** Legacy 128-bit register 2 (a NAT target's port, beside its address in register 1). */
export const REG_2 = 2;
/** NFT_NAT_DNAT. */
export const NAT_DNAT = 1;
/** NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED: an address and a port are given. */
export const NAT_RANGE_ADDR_PORT = 3;

/** Expression attributes, per expression. */
export const A = {
  immediate: { DREG: 1, DATA: 2 },
  bitwise: { SREG: 1, DREG: 2, LEN: 3, MASK: 4, XOR: 5 },
  cmp: { SREG: 1, OP: 2, DATA: 3 },
  lookup: { SET: 1, SREG: 2, DREG: 3, SET_ID: 4, FLAGS: 5 },
  payload: { DREG: 1, BASE: 2, OFFSET: 3, LEN: 4 },
  meta: { DREG: 1, KEY: 2, SREG: 3 },
  socket: { KEY: 1, DREG: 2, LEVEL: 3 },
  ct: { DREG: 1, KEY: 2, DIRECTION: 3, SREG: 4 },
  limit: { RATE: 1, UNIT: 2, BURST: 3, TYPE: 4, FLAGS: 5 },
  counter: { BYTES: 1, PACKETS: 2 },
  log: { GROUP: 1, PREFIX: 2, SNAPLEN: 3, QTHRESHOLD: 4, LEVEL: 5, FLAGS: 6 },
  reject: { TYPE: 1, ICMP_CODE: 2 },
  redir: { REG_PROTO_MIN: 1, REG_PROTO_MAX: 2, FLAGS: 3 },
  nat: { TYPE: 1, FAMILY: 2, REG_ADDR_MIN: 3, REG_ADDR_MAX: 4, REG_PROTO_MIN: 5, REG_PROTO_MAX: 6, FLAGS: 7 },
  masq: { FLAGS: 1, REG_PROTO_MIN: 2, REG_PROTO_MAX: 3 },
  objref: { IMM_TYPE: 1, IMM_NAME: 2 },
  fib: { DREG: 1, RESULT: 2, FLAGS: 3 },
  dynset: { SET_NAME: 1, SET_ID: 2, OP: 3, SREG_KEY: 4, SREG_DATA: 5, TIMEOUT: 6, EXPR: 7, PAD: 8, FLAGS: 9, EXPRESSIONS: 10 },
} as const;

/** NFT_DYNSET_OP_UPDATE: add the key if missing, refresh its timeout, run its expression. */
export const DYNSET_OP_UPDATE = 1;
/** NFT_LIMIT_PKTS: a limit counted in packets. */
export const LIMIT_PKTS = 0;
/** NFT_LIMIT_F_INV: the limit matches when over the rate (`limit rate over`). */
export const LIMIT_F_INV = 1;

export const CMP_EQ = 0;
export const CMP_NEQ = 1;
export const LOOKUP_F_INV = 1;

export const META = { MARK: 3, OIF: 5, IIFNAME: 6, OIFNAME: 7, SKUID: 10, NFPROTO: 15, L4PROTO: 16 } as const;
export const PAYLOAD_BASE = { LL: 0, NETWORK: 1, TRANSPORT: 2 } as const;
export const SOCKET_MARK = 1;
export const SOCKET_CGROUPV2 = 3;
export const CT_STATE = 0;
export const CT_STATUS = 2;
export const CT_MARK = 3;
export const CT_STATE_BITS = { invalid: 1, established: 2, related: 4, new: 8, untracked: 64 } as const;
export const REJECT_TCP_RST = 1;
export const REJECT_ICMPX_UNREACH = 2;
export const ICMPX_ADMIN_PROHIBITED = 3;

/** nftables user-space datatype ids (nftables include/datatype.h); only `nft list` reads them. */
export const DTYPE = {
  ipv4_addr: 7,
  ipv6_addr: 8,
  inet_proto: 12,
  inet_service: 13,
  mark: 19,
  uid: 24,
  icmpv6_type: 29,
  ifname: 41,
  cgroupv2: 46,
} as const;
/** Concatenated datatypes are packed 6 bits per field (nftables TYPE_BITS). */
export const TYPE_BITS = 6;

/** libnftnl user-data TLV types for comments. */
export const UDATA_COMMENT = { table: 0, chain: 0, rule: 0, obj: 0, set: 7 } as const;

// NFLOG (nfnetlink_log.h)
export const NFULNL_MSG_PACKET = 0;
export const NFULNL_MSG_CONFIG = 1;
