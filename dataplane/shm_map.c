/* Same-host transport: the shared mapping and the doorbells. The
 * connecting side makes them (a sealed memfd, two eventfds); the accepting
 * side checks every descriptor before it touches a byte (shm.h,
 * "Set-up"). */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/shm_impl.h"

#define SEALS_NEEDED (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

tw_status shm_map_probe(struct st *t)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct stat s;
	if (fd < 0 || fstat(fd, &s) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return tw_fail(TW_EIO, "shm: no eventfd: %s", strerror(e));
	}
	close(fd);
	t->efd_dev = s.st_dev;
	t->efd_ino = s.st_ino;
	return TW_OK;
}

/* The rings over a mapping of ring_size rings at base: ring 0 carries
 * the connecting side's bytes. */
static void rings_init(struct sconn *c, void *base, size_t len,
		       uint64_t ring_size)
{
	c->map = base;
	c->map_len = len;
	unsigned mine = c->accepted ? 1u : 0u;
	shm_ring_init(&c->txr, base, ring_size, mine);
	shm_ring_init(&c->rxr, base, ring_size, 1u - mine);
}

tw_status shm_map_create(struct sconn *c, uint64_t ring_size,
			 int fds[SETUP_NFDS])
{
	for (unsigned i = 0; i < SETUP_NFDS; i++)
		fds[i] = -1;
	size_t len = (size_t)shm_map_size(ring_size);
	const char *what = "memfd_create";
	int e = 0;
	fds[SETUP_MEMFD] = memfd_create("tensorwire-shm",
					MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fds[SETUP_MEMFD] < 0)
		goto fail;
	what = "ftruncate";
	if (ftruncate(fds[SETUP_MEMFD], (off_t)len) != 0)
		goto fail;
	what = "sealing";
	if (fcntl(fds[SETUP_MEMFD], F_ADD_SEALS, SEALS_NEEDED) != 0)
		goto fail;
	what = "eventfd";
	fds[SETUP_BELL_ACCEPTOR] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fds[SETUP_BELL_CONNECTOR] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fds[SETUP_BELL_ACCEPTOR] < 0 || fds[SETUP_BELL_CONNECTOR] < 0)
		goto fail;
	/* Populated: the pages exist before either side touches them (the
	 * peer's own MAP_POPULATE then only maps them). A fresh shmem file
	 * reads as zeros: every index and flag starts at 0. */
	what = "mmap";
	void *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, fds[SETUP_MEMFD], 0);
	if (base == MAP_FAILED)
		goto fail;
	rings_init(c, base, len, ring_size);
	/* What a CMA probe compares (shm_cma_probe): unguessable, so that
	 * matching bytes mean the peer's very mapping. */
	struct shm_ring_ctl *c0 = base;
	if (getrandom(c0->probe, sizeof(c0->probe), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(c0->probe)) {
		uint64_t x = tw_now_ns() ^ (uint64_t)(uintptr_t)base;
		for (size_t i = 0; i < sizeof(c0->probe); i++, x >>= 2)
			c0->probe[i] = (uint8_t)(x * 0x9e3779b97f4a7c15ull >>
						 56);
	}
	c->my_bell = dup(fds[SETUP_BELL_CONNECTOR]);
	c->peer_bell = dup(fds[SETUP_BELL_ACCEPTOR]);
	if (c->my_bell < 0 || c->peer_bell < 0) {
		what = "dup";
		e = errno;
		shm_map_free(c);
		errno = e;
		goto fail;
	}
	return TW_OK;
fail:
	e = errno;
	close_fds(fds, SETUP_NFDS);
	return tw_fail(e == ENOMEM || e == EMFILE || e == ENFILE || e == ENOSPC
			       ? TW_ENOMEM
			       : TW_EIO,
		       "shm: a ring of %llu bytes: %s failed: %s",
		       (unsigned long long)ring_size, what, strerror(e));
}

/* An eventfd (every one is the same anonymous inode), and not anything
 * else a peer could pass: a pipe, a file, a socket. */
static bool is_eventfd(const struct st *t, int fd)
{
	struct stat s;
	if (fstat(fd, &s) != 0 || s.st_dev != t->efd_dev ||
	    s.st_ino != t->efd_ino)
		return false;
	/* Other anonymous files (timerfd, signalfd, epoll) share the inode:
	 * the kernel's fdinfo names an eventfd's counter. Without /proc the
	 * inode check stands alone; nothing else of that kind harms a
	 * poll, a non-blocking read or an io_uring write. */
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	int f = open(p, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return true;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	return strstr(buf, "eventfd-count:") != NULL;
}

tw_status shm_map_accept(struct sconn *c, uint64_t ring_size,
			 int fds[SETUP_NFDS], const char **why)
{
	struct st *t = c->t;
	tw_status st = TW_EPROTO;
	int mfd = fds[SETUP_MEMFD];
	*why = NULL;
	if (ring_size < SHM_RING_MIN || ring_size > SHM_RING_MAX ||
	    (ring_size & (ring_size - 1)) != 0) {
		*why = "shm: SETUP names a ring size that is not a power of 2 "
		       "in 64 KiB..1 GiB";
		goto out;
	}
	if (ring_size > t->o.ring_size) {
		*why = "shm: SETUP names a ring larger than READY allowed";
		goto out;
	}
	/* Sealed against shrinking before we map: a shrunk file would make
	 * our next access to a page past its end a SIGBUS. Growing and
	 * further sealing closed too, as SETUP promises; writing must stay
	 * possible. F_GET_SEALS fails for anything but a memfd. */
	int seals = fcntl(mfd, F_GET_SEALS);
	if (seals < 0 || (seals & SEALS_NEEDED) != SEALS_NEEDED) {
		*why = "shm: the SETUP memfd is not sealed against shrinking, "
		       "growing and sealing";
		goto out;
	}
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
		*why = "shm: the SETUP memfd is sealed against writing";
		goto out;
	}
	struct stat s;
	struct statfs fs;
	if (fstat(mfd, &s) != 0 || !S_ISREG(s.st_mode) ||
	    (uint64_t)s.st_size != shm_map_size(ring_size)) {
		*why = "shm: the SETUP memfd's size is not that of its rings";
		goto out;
	}
	/* tmpfs (shmem) only: a hugetlbfs memfd can run out of pages. */
	if (fstatfs(mfd, &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
		*why = "shm: the SETUP memfd is not on tmpfs";
		goto out;
	}
	if (!is_eventfd(t, fds[SETUP_BELL_ACCEPTOR]) ||
	    !is_eventfd(t, fds[SETUP_BELL_CONNECTOR])) {
		*why = "shm: a SETUP doorbell is not an eventfd";
		goto out;
	}
	size_t len = (size_t)shm_map_size(ring_size);
	void *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, mfd, 0);
	if (base == MAP_FAILED) {
		st = TW_ENOMEM;
		*why = "shm: the rings could not be mapped";
		goto out;
	}
	rings_init(c, base, len, ring_size);
	c->my_bell = fds[SETUP_BELL_ACCEPTOR];
	c->peer_bell = fds[SETUP_BELL_CONNECTOR];
	fds[SETUP_BELL_ACCEPTOR] = fds[SETUP_BELL_CONNECTOR] = -1;
	st = TW_OK;
out:
	close_fds(fds, SETUP_NFDS);
	return st;
}

bool shm_cma_probe(struct sconn *c, uint64_t peer_addr)
{
	if (c->map == NULL || c->peer_pid <= 0 ||
	    peer_addr + SHM_CTL_SIZE < peer_addr)
		return false;
	const struct shm_ring_ctl *c0 = c->map;
	uint8_t got[sizeof(c0->probe)];
	size_t off = offsetof(struct shm_ring_ctl, probe);
	struct iovec l = {got, sizeof(got)};
	struct iovec r = {(void *)(uintptr_t)(peer_addr + off), sizeof(got)};
	/* Permission (same user, or CAP_SYS_PTRACE, and no Yama or LSM in
	 * the way) and the right process: the peer's address of the
	 * mapping shows the bytes ours does. */
	return process_vm_readv(c->peer_pid, &l, 1, &r, 1, 0) ==
		       (ssize_t)sizeof(got) &&
	       memcmp(got, c0->probe, sizeof(got)) == 0;
}

void shm_map_free(struct sconn *c)
{
	if (c->map != NULL)
		munmap(c->map, c->map_len);
	c->map = NULL;
	c->map_len = 0;
	if (c->my_bell >= 0)
		close(c->my_bell);
	if (c->peer_bell >= 0)
		close(c->peer_bell);
	c->my_bell = c->peer_bell = -1;
}
