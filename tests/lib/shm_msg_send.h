/* Test helper: send one same-host transport socket message (dataplane/
 * shm_impl.h, struct shm_msg and its body) with up to 4 descriptors, as a
 * hand-made peer does (test_shm.c's hostile peer, fuzz_shm_ring).
 * Header-only: the fuzz targets use it too. */
#ifndef TW_TESTS_LIB_SHM_MSG_SEND_H
#define TW_TESTS_LIB_SHM_MSG_SEND_H

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dataplane/shm_impl.h"

/* sendmsg's result: the message's whole size when sent. */
static inline ssize_t shm_msg_send(int fd, uint32_t type, const void *body,
				   uint32_t len, const int *fds, unsigned nfds)
{
	struct shm_msg h = {.type = type, .len = len};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)body, len}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	char cb[CMSG_SPACE(sizeof(int) * 4)];
	if (nfds > 4)
		return -1;
	if (nfds > 0) {
		memset(cb, 0, sizeof(cb));
		m.msg_control = cb;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}

#endif
