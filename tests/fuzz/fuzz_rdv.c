/* libFuzzer target for the control plane's payload parsers
 * (rpc/rendezvous.c: rdv_parse_join, rdv_parse_members, rdv_parse_round,
 * rdv_parse_gone):
 * what rank 0 reads from a joining worker and a worker from rank 0, past
 * the frame decoder. Input: one byte choosing the world size (1 + b % 8),
 * then a frame. Anything must be refused with a reason or parse into what
 * the parser promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#include "dataplane/err.h"
#include "rpc/rendezvous.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(void)
{
	abort();
}

/* A refusal is TW_EPROTO (or TW_ENOMEM) with its own reason. */
static void refused(tw_status st)
{
	if (st == TW_ENOMEM)
		return;
	if (st != TW_EPROTO || strcmp(tw_errmsg(st), tw_strerror(st)) == 0)
		fail();
}

static void check_member(const struct rdv_member *m)
{
	size_t n = strnlen(m->name, TW_WORKER_NAME_MAX);
	if (n == TW_WORKER_NAME_MAX || !rdv_name_valid(m->name, n))
		fail();
	if (m->nloops == 0 || m->nloops > RDV_MAX_LOOPS || m->addrs == NULL)
		fail();
	for (uint32_t i = 0; i < m->nloops * (m->local_addrs ? 2u : 1u); i++) {
		size_t k = strnlen(m->addrs[i], TW_ADDR_MAX);
		if (k == 0 || k == TW_ADDR_MAX)
			fail();
	}
}

static void parse_all(const tw_value *p, uint32_t world)
{
	struct rdv_member m;
	int64_t rank, w;
	tw_fail_static(TW_OK, NULL);
	tw_status st = rdv_parse_join(p, &m, &rank, &w);
	if (st == TW_OK) {
		check_member(&m);
		free(m.addrs);
	} else {
		refused(st);
		if (m.addrs != NULL)
			fail(); /* freed on failure */
	}

	struct rdv_member *ms = NULL;
	tw_fail_static(TW_OK, NULL);
	st = rdv_parse_members(p, world, &ms);
	if (st == TW_OK) {
		for (uint32_t r = 0; r < world; r++) {
			if (ms[r].rank != r)
				fail();
			check_member(&ms[r]);
			for (uint32_t q = 0; q < r; q++)
				if (strcmp(ms[q].name, ms[r].name) == 0)
					fail();
		}
		rdv_members_free(ms, world);
	} else {
		refused(st);
		if (ms != NULL)
			fail();
	}

	uint32_t round;
	struct rdv_count c;
	int64_t left = -2;
	uint8_t gone[1] = {0};
	tw_fail_static(TW_OK, NULL);
	st = rdv_parse_round(p, world, &round, &c, &left, NULL);
	if (st == TW_OK) {
		if (left < -1 || (int64_t)c.active < 0 || (int64_t)c.events < 0)
			fail();
	} else {
		refused(st);
	}
	tw_fail_static(TW_OK, NULL);
	st = rdv_parse_round(p, world, &round, &c, &left, gone);
	if (st != TW_OK)
		refused(st);
	tw_fail_static(TW_OK, NULL);
	st = rdv_parse_gone(p, world, gone);
	if (st != TW_OK)
		refused(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t world = 1 + data[0] % 8;
	data++;
	size--;
	/* The control plane's largest frame: a member list of 8. */
	if (size > RDV_LIST_MAX(8))
		return 0;
	tw_buf *b;
	if (tw_buf_alloc(size, &b) != TW_OK)
		return 0;
	if (size)
		memcpy(b->data, data, size);
	tw_in_msg in;
	if (tw_msg_decode(b, 0, size, NULL, NULL, &in) == TW_OK) {
		parse_all(&in.payload, world);
		tw_in_msg_release(&in);
	}
	tw_buf_release(b);
	return 0;
}
