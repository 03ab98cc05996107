// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// Weir's SO_REUSEPORT balancer: spreads datagrams over the shards' sockets
// round robin, one datagram at a time, so a single busy exporter (one source
// address and port, one 5-tuple) uses every shard instead of the one the
// kernel's hash would pick.
//
// One copy of this program and its maps is loaded per listener (per reuseport
// group). The loader puts shard i's socket at index i of `shard_sockets` and
// the number of shards in `shard_count`. Whatever cannot be selected (no
// shards yet, an empty slot) returns SK_PASS without a selection, and the
// kernel falls back to its own hash: the program never drops a datagram.
//
// The file declares the few kernel ABI items it uses instead of including
// kernel headers, so the built object does not change with the headers
// installed on the build machine (scripts/build-ebpf --check compares it).

typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

// include/uapi/linux/bpf.h
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_REUSEPORT_SOCKARRAY 20
#define SK_PASS 1

struct sk_reuseport_md;

// Helper ids from include/uapi/linux/bpf.h (__BPF_FUNC_MAPPER).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_sk_select_reuseport)(struct sk_reuseport_md *md, void *map, void *key, __u64 flags) = (void *)82;

// Shard i's socket at index i (value: the socket's fd, written by the loader).
struct {
    __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u32);
} shard_sockets SEC(".maps");

// How many shards are in `shard_sockets` (index 0).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} shard_count SEC(".maps");

// Per-CPU round-robin position: no atomic and no shared cache line between
// the CPUs that run the receive path.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} next_shard SEC(".maps");

SEC("sk_reuseport")
int select_shard(struct sk_reuseport_md *md)
{
    __u32 zero = 0;
    __u32 *count = bpf_map_lookup_elem(&shard_count, &zero);
    __u64 *next = bpf_map_lookup_elem(&next_shard, &zero);
    if (!count || !next || *count == 0)
        return SK_PASS;
    __u32 index = (__u32)(*next % *count);
    *next += 1;
    // On failure (an empty slot during a restart) nothing is selected and
    // the kernel hashes the datagram to one of the group's sockets.
    bpf_sk_select_reuseport(md, &shard_sockets, &index, 0);
    return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
