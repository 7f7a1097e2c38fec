/* The same-host transport's provider: its options checked (the socket
 * directory must exist), one transport per loop, each listening on a
 * socket of its own in the directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataplane/err.h"
#include "dataplane/shm.h"
#include "dataplane/shm_impl.h"
#include "dataplane/shm_sweep.h"

struct shm_env {
	struct tw_shm_opts o;
	char dir[SHM_PATH_MAX]; /* o.dir: our copy, or the default */
	/* The worker's limits, counted across its loops. */
	struct tw_shm_shared *sh;
};

static tw_status dir_check(const char *dir)
{
	struct stat s;
	if (stat(dir, &s) != 0)
		return tw_fail(TW_EINVAL, "shm: dir '%.80s': %s", dir,
			       strerror(errno));
	if (!S_ISDIR(s.st_mode))
		return tw_fail(TW_EINVAL, "shm: dir '%.80s' is not a directory",
			       dir);
	return TW_OK;
}

static tw_status s_check(const void *opts, uint32_t nloops)
{
	(void)nloops;
	const struct tw_shm_opts *in = opts;
	tw_status st = tw_shm_opts_check(in);
	if (st != TW_OK)
		return st;
	struct tw_shm_opts o;
	tw_shm_opts_get(in, &o);
	return dir_check(o.dir != NULL ? o.dir : tw_shm_default_dir());
}

static tw_status s_start(const void *opts, const struct tw_transport_group *g,
			 void **env)
{
	(void)g;
	struct shm_env *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return tw_fail_static(TW_ENOMEM,
				      "shm: no memory for its options");
	tw_shm_opts_get(opts, &e->o);
	const char *dir = e->o.dir != NULL ? e->o.dir : tw_shm_default_dir();
	size_t n = strlen(dir);
	/* A directory: each transport's listen makes its own socket in it. */
	int k = snprintf(e->dir, sizeof(e->dir), "%s%s", dir,
			 n > 0 && dir[n - 1] == '/' ? "" : "/");
	tw_status st = k < 0 || (size_t)k >= sizeof(e->dir)
			       ? tw_fail(TW_EINVAL, "shm: dir is too long")
			       : dir_check(e->dir);
	if (st == TW_OK) /* what killed workers left there */
		(void)shm_sweep(e->dir, SHM_SWEEP_AGE_NS, SHM_SWEEP_MAX);
	if (st == TW_OK && (e->sh = tw_shm_shared_create()) == NULL)
		st = tw_fail_static(TW_ENOMEM,
				    "shm: no memory for its shared limits");
	if (st != TW_OK) {
		free(e);
		return st;
	}
	e->o.dir = e->dir;
	*env = e;
	return TW_OK;
}

static tw_status s_create(void *env, uint32_t idx, tw_loop *loop,
			  const struct tw_transport_cbs *cbs,
			  tw_transport **out)
{
	(void)idx;
	struct shm_env *e = env;
	return tw_shm_transport_create(loop, &e->o, cbs, e->sh, out);
}

static tw_status s_listen_addr(void *env, uint32_t idx, char *url, size_t len)
{
	(void)idx;
	struct shm_env *e = env;
	int k = snprintf(url, len, "shm://%s", e->dir);
	return k >= 0 && (size_t)k < len ? TW_OK : TW_EOVERFLOW;
}

static void s_stop(void *env)
{
	struct shm_env *e = env;
	if (e != NULL)
		tw_shm_shared_destroy(e->sh);
	free(e);
}

const struct tw_transport_provider tw_shm_provider = {
	.name = TW_TRANSPORT_SHM,
	.check = s_check,
	.start = s_start,
	.create = s_create,
	.listen_addr = s_listen_addr,
	/* Its hot path is loads and stores in the mapping, plain sendmsg
	 * and recvmsg on the socket; the ring's operations go through
	 * tw_loop_sqe. */
	.lendable = true,
	.stop = s_stop,
};
