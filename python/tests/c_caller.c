/* A C worker that calls functions served in Python (python/tests): joins
 * as rank R of N, calls py::double(21) and py::scaled(tensor [1, 2]) on
 * worker0, checks the answers, and shuts down gracefully. Exit status 0
 * when both came back right. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: c_caller RANK WORLD tcp://HOST:PORT\n");
		return 2;
	}
	char name[32];
	snprintf(name, sizeof(name), "worker%s", argv[1]);
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = name;
	o.rank = (uint32_t)atoi(argv[1]);
	o.world_size = (uint32_t)atoi(argv[2]);
	o.rendezvous = argv[3];
	const char *sh = getenv("TW_TEST_SAME_HOST");
	if (sh != NULL && strcmp(sh, "0") == 0)
		o.same_host = false;
	tw_agent *a;
	tw_status st = tw_agent_init(&o, &a);
	if (st != TW_OK) {
		fprintf(stderr, "c_caller: init: %s\n", tw_errmsg(st));
		return 1;
	}
	int bad = 0;
	tw_value args, res, err;
	tw_value_tuple(&args, 1);
	tw_value_set_item(&args, 0, tw_value_int(21));
	st = tw_rpc_sync(a, "worker0", "py::double", &args, NULL, 30000, &res,
			 &err);
	int64_t n = 0;
	if (st != TW_OK || tw_value_get_int(&res, &n) != TW_OK || n != 42) {
		fprintf(stderr, "c_caller: py::double: %s\n", tw_errmsg(st));
		bad = 1;
	}
	tw_value_destroy(&args);
	tw_value_destroy(&res);
	tw_value_destroy(&err);
	tw_tensor t;
	int64_t two = 2;
	tw_tensor_alloc(&t, TW_FLOAT32, 1, &two);
	((float *)t.data)[0] = 1.0f;
	((float *)t.data)[1] = 2.0f;
	tw_value tv;
	tw_value_tensor(&tv, &t);
	tw_tensor_release(&t);
	tw_value_tuple(&args, 1);
	tw_value_set_item(&args, 0, tv);
	st = tw_rpc_sync(a, "worker0", "py::scaled", &args, NULL, 30000, &res,
			 &err);
	const tw_tensor *r = NULL;
	if (st != TW_OK || tw_value_get_tensor(&res, &r) != TW_OK ||
	    r->dtype != TW_FLOAT32 || ((const float *)r->data)[0] != 3.0f ||
	    ((const float *)r->data)[1] != 6.0f) {
		fprintf(stderr, "c_caller: py::scaled: %s\n", tw_errmsg(st));
		bad = 1;
	}
	tw_value_destroy(&args);
	tw_value_destroy(&res);
	tw_value_destroy(&err);
	st = tw_agent_shutdown(a, true);
	if (st != TW_OK) {
		fprintf(stderr, "c_caller: shutdown: %s\n", tw_errmsg(st));
		bad = 1;
	}
	return bad;
}
