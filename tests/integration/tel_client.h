/* A DPDK telemetry client for tests (issue 16): what dpdk-telemetry.py
 * does, in C. The EAL of a process serves /var/run/dpdk/PREFIX/
 * dpdk_telemetry.v2 (SOCK_SEQPACKET) unless started with --no-telemetry:
 * it greets a client with a JSON line, then answers each "/cmd[,params]"
 * with one JSON message {"/cmd": ...}. */
#ifndef TW_TESTS_TEL_CLIENT_H
#define TW_TESTS_TEL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connect to the EAL of file prefix prefix and read its greeting: a
 * socket, or -1. */
int tel_connect(const char *prefix);
/* Send req and read its answer into buf (NUL-terminated): its length, or
 * -1. */
long tel_ask(int fd, const char *req, char *buf, size_t n);
/* The unsigned number after "key": in json (the first), in *v. */
bool tel_u64(const char *json, const char *key, uint64_t *v);
/* The first number of the array after "key": (a histogram's count). */
bool tel_first(const char *json, const char *key, uint64_t *v);

#endif
