/* USDT probes (provider "tensorwire"): static tracepoints that cost a
 * nop when nobody traces them (sys/sdt.h, from systemtap-sdt-dev), and
 * nothing at all in a build without that header. perf/README.md shows
 * how to use them (perf probe, perf record -e sdt_tensorwire:*,
 * bpftrace). Each carries the ids that link it to the others: a call's
 * req_id and its peer's rank on both sides.
 *
 *   call_send(req_id, dst, mtype)       a CALL (or remote, fetch) leaves
 *   call_done(req_id, dst, status)      its future completes (response,
 *                                       timeout, failure)
 *   call_timeout(req_id, dst, timeout_ms)
 *   frame_recv(src, req_id, type, len)  a frame reached the agent
 *   handler_start(src, req_id, fn)      a served call starts (fn: name)
 *   handler_end(src, req_id, status)    ... and its handler returned
 *   response_send(dst, req_id, type)    its answer leaves
 *   conn_up(conn_id, peer)              a connection is up (peer: text)
 *   conn_down(conn_id, peer, status)
 *   dpdk_rexmit(session, pn, count)     a DPDK packet sent again
 */
#ifndef TW_DATAPLANE_PROBE_H
#define TW_DATAPLANE_PROBE_H

#if defined(TW_HAVE_SDT)
#include <sys/sdt.h>
#define TW_PROBE2(n, a, b) DTRACE_PROBE2(tensorwire, n, a, b)
#define TW_PROBE3(n, a, b, c) DTRACE_PROBE3(tensorwire, n, a, b, c)
#define TW_PROBE4(n, a, b, c, d) DTRACE_PROBE4(tensorwire, n, a, b, c, d)
#else
#define TW_PROBE2(n, a, b) ((void)0)
#define TW_PROBE3(n, a, b, c) ((void)0)
#define TW_PROBE4(n, a, b, c, d) ((void)0)
#endif

#endif
