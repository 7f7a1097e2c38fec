/* Internal: the agent's statistics on a unix socket, for tools/tw-stat
 * (tw_agent_opts.stat_socket, TW_STAT_SOCKET).
 *
 * Protocol: the client sends one line, "json" or "text" (an empty line:
 * text), at most STAT_REQ_MAX bytes; the server answers with a snapshot
 * (tw_stats_json / tw_stats_text) and closes. Anything else is answered
 * "error: ..." and closed.
 *
 * What a client can make the server do is bounded: one client at a time
 * (others wait in the listen backlog of STAT_BACKLOG, the kernel refuses
 * the rest), a request of STAT_REQ_MAX bytes read within STAT_IO_MS, an
 * answer written within STAT_IO_MS, or the connection is closed. Only
 * this user and root are answered (SO_PEERCRED); the socket is 0600 in a
 * directory of this user's closed to others. The server is a thread of
 * its own: it reads the loops' counters with relaxed loads and never
 * waits for a loop.
 */
#ifndef TW_RPC_STAT_SERVER_H
#define TW_RPC_STAT_SERVER_H

#include <tensorwire/agent.h>
#include <tensorwire/status.h>

#define STAT_REQ_MAX 64
#define STAT_BACKLOG 4
#define STAT_IO_MS 1000

struct stat_server;

/* Serve a's statistics at path: its directory made (0700) when missing,
 * else required to be this user's and closed to group and others; a
 * stale socket there (nobody listening) is replaced, a live one or
 * another file refused. Failures record their reason. */
tw_status stat_server_start(const tw_agent *a, const char *path,
			    struct stat_server **out);
/* Stop (the thread ends within STAT_IO_MS of a client's request), remove
 * the socket, free. NULL is ignored. */
void stat_server_stop(struct stat_server *s);

#endif
