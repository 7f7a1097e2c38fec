/* perf_fns: the functions a benchmark's server serves (perf_fns.h). */
#include "perf_fns.h"

tw_status pf_noop(tw_call_ctx *ctx, const tw_value *args,
		  const tw_value *kwargs, tw_value *result, void *arg)
{
	*result = tw_value_none();
	return TW_OK;
}

tw_status pf_echo(tw_call_ctx *ctx, const tw_value *args,
		  const tw_value *kwargs, tw_value *result, void *arg)
{
	const tw_value *x;
	if (tw_value_get_item(args, 0, &x) != TW_OK)
		return TW_EBADARGS;
	return tw_value_clone(result, x);
}

tw_status pf_fail(tw_call_ctx *ctx, const tw_value *args,
		  const tw_value *kwargs, tw_value *result, void *arg)
{
	tw_value_error(result, TW_EVALUE, 0, "perf::fail: injected");
	return TW_EVALUE;
}
