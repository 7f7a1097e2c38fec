/* Functions the demo and tw-worker serve: small, one of each behaviour. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "demo_fns.h"

/* demo::add(a, b) -> a + b, ints or floats. */
static tw_status fn_add(tw_call_ctx *ctx, const tw_value *args,
			const tw_value *kwargs, tw_value *result, void *arg)
{
	const tw_value *x, *y;
	if (tw_value_get_item(args, 0, &x) || tw_value_get_item(args, 1, &y)) {
		tw_value_error(result, TW_ETYPE, 0,
			       "demo::add takes two arguments");
		return TW_ETYPE;
	}
	if (x->kind == TW_KIND_INT && y->kind == TW_KIND_INT) {
		/* Python ints do not overflow; ours are 64-bit: say so
		 * rather than wrap (or invoke undefined behaviour). */
		int64_t sum;
		if (__builtin_add_overflow(x->u.i, y->u.i, &sum)) {
			char msg[160];
			snprintf(msg, sizeof(msg),
				 "demo::add: %" PRId64 " + %" PRId64
				 " overflows a 64-bit integer",
				 x->u.i, y->u.i);
			tw_value_error(result, TW_EVALUE, 0, msg);
			return TW_EVALUE;
		}
		*result = tw_value_int(sum);
		return TW_OK;
	}
	double a, b;
	if (tw_value_get_double(x, &a) || tw_value_get_double(y, &b)) {
		tw_value_error(result, TW_ETYPE, 0,
			       "demo::add: arguments must be numbers");
		return TW_ETYPE;
	}
	*result = tw_value_double(a + b);
	return TW_OK;
}

/* demo::echo(x) -> x. A tensor goes back from the receive buffer it arrived
 * in: the clone shares bytes, nothing is copied. */
static tw_status fn_echo(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	const tw_value *x;
	if (tw_value_get_item(args, 0, &x))
		return TW_EBADARGS;
	return tw_value_clone(result, x);
}

/* demo::check_positive(x): raises a value error for x <= 0. */
static tw_status fn_check(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	const tw_value *x;
	int64_t v = 0;
	if (tw_value_get_item(args, 0, &x) || tw_value_get_int(x, &v))
		return TW_ETYPE;
	if (v <= 0) {
		char msg[96];
		snprintf(msg, sizeof(msg),
			 "expected a positive value, got %" PRId64, v);
		tw_value_error(result, TW_EVALUE, 0, msg);
		return TW_EVALUE;
	}
	*result = tw_value_bool(true);
	return TW_OK;
}

/* demo::slow(ms): a blocking handler (runs on the executor pool), ms in
 * 0 .. DEMO_SLOW_MAX_MS: a stranger's argument must not hold an executor
 * thread (and shutdown, which waits for it) for long. */
static tw_status fn_slow(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	const tw_value *x;
	int64_t ms = 0;
	if (tw_value_get_item(args, 0, &x) || tw_value_get_int(x, &ms))
		return TW_ETYPE;
	if (ms < 0 || ms > DEMO_SLOW_MAX_MS) {
		char msg[128];
		snprintf(msg, sizeof(msg),
			 "demo::slow: ms must be 0 .. %d, got %" PRId64,
			 DEMO_SLOW_MAX_MS, ms);
		tw_value_error(result, TW_EVALUE, 0, msg);
		return TW_EVALUE;
	}
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		; /* EINTR: sleep the rest */
	*result = tw_value_none();
	return TW_OK;
}

tw_status demo_register(tw_agent *a)
{
	tw_status s;
	if ((s = tw_agent_register(a, "demo::add", fn_add, NULL, 0)) ||
	    (s = tw_agent_register(a, "demo::echo", fn_echo, NULL, 0)) ||
	    (s = tw_agent_register(a, "demo::check_positive", fn_check, NULL,
				   0)) ||
	    (s = tw_agent_register(a, "demo::slow", fn_slow, NULL,
				   TW_FN_BLOCKING)))
		return s;
	return TW_OK;
}

tw_status demo_setup(tw_agent *a, void *arg)
{
	(void)arg;
	return demo_register(a);
}
