/* The same-host transport's shared mapping: two single-producer
 * single-consumer byte rings, one per direction, and the records they
 * carry. Plain memory operations, no system calls: the transport
 * (shm*.c) drives them, and the tests drive them as a hostile peer would.
 *
 * Everything a peer can write is read once into a local and bounded before
 * use: its index (tail for a consumer, head for a producer), the record
 * headers, and the bytes themselves, which are copied out before anything
 * looks at them. Each side keeps its own index in a local (pos) and only
 * ever stores the shared one, never reads it back: the peer may scribble
 * over it. */
#ifndef TW_DATAPLANE_SHM_RING_H
#define TW_DATAPLANE_SHM_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/*
 * The mapping (one memfd per connection, made by the connecting side):
 *
 *   [0, 4 KiB)                 ring 0's control block
 *   [4 KiB, 8 KiB)             ring 1's control block
 *   [8 KiB, 8 KiB + size)      ring 0's bytes
 *   [8 KiB + size, 8 KiB + 2 size)  ring 1's bytes
 *
 * Ring 0 carries the connecting side's frames, ring 1 the accepting
 * side's. size (a power of 2, SHM_RING_MIN..SHM_RING_MAX) comes in the
 * SETUP message; the accepting side maps the file only if its size is
 * exactly shm_map_size(size) and it is sealed against shrinking and
 * growing (shm_map.c).
 */
#define SHM_CTL_SIZE 4096u
#define SHM_RING_MIN (UINT64_C(64) << 10)
#define SHM_RING_MAX (UINT64_C(1) << 30)
/* Producer and consumer lines this far apart: no false sharing, not even
 * through the adjacent-line prefetcher. */
#define SHM_LINE 128u

static inline uint64_t shm_map_size(uint64_t ring_size)
{
	return 2u * (uint64_t)SHM_CTL_SIZE + 2u * ring_size;
}

/*
 * A ring's control block. tail and head are free-running byte counts
 * (never wrapped; the byte at count n is at data[n & (size - 1)]).
 * Invariants a well-behaved peer keeps, checked on every read:
 * 0 <= tail - head <= size, and tail is a multiple of 8 (records start at
 * multiples of 8).
 *
 * The two sleep flags make the doorbells cheap: a side rings the peer's
 * eventfd only when the peer said it sleeps (shm.h, "Waking").
 */
struct shm_ring_ctl {
	/* The producer's line. */
	alignas(SHM_LINE) _Atomic uint64_t tail; /* bytes published */
	_Atomic uint32_t prod_waiting; /* the producer waits for room and
					* its loop sleeps: ring it when
					* head moves */
	/* The consumer's line. */
	alignas(SHM_LINE) _Atomic uint64_t head; /* bytes consumed */
	_Atomic uint32_t cons_sleeping; /* the consumer's loop sleeps: ring
					 * it when tail moves */
	_Atomic uint32_t cma_ok;        /* the consumer can read the
					 * producer's memory (CMA): it takes
					 * SHM_REC_CMA records */
	/* Bytes the connecting side writes once, at creation, in ring 0's
	 * block: a process that reads them at the peer's address of the
	 * mapping (process_vm_readv) is reading the peer (shm_map.c). */
	alignas(SHM_LINE) uint8_t probe[32];
};
_Static_assert(sizeof(struct shm_ring_ctl) <= SHM_CTL_SIZE,
	       "a control block fits its page");
_Static_assert(offsetof(struct shm_ring_ctl, head) -
			       offsetof(struct shm_ring_ctl, tail) >=
		       SHM_LINE,
	       "producer and consumer lines apart");

/*
 * A record: an 8-byte header, len bytes, zero to 7 bytes of pad to the
 * next multiple of 8 (so a header never wraps). The producer publishes
 * whole records: tail moves past a record's pad in one store.
 *
 *   SHM_REC_DATA  len bytes of the frame stream: frames back to back,
 *                 each starting with its 48-byte header. A frame may
 *                 span records (a frame larger than the ring always
 *                 does); the consumer reassembles as a TCP receiver
 *                 does, and frees room as it copies.
 */
struct shm_rec {
	uint32_t len;
	uint16_t type;
	uint16_t magic; /* SHM_REC_MAGIC: garbage shows at once */
};
_Static_assert(sizeof(struct shm_rec) == 8, "record header");
#define SHM_REC_MAGIC 0x5754u /* "TW" */
#define SHM_REC_DATA 1u
#define SHM_REC_CMA 2u

/*
 *   SHM_REC_CMA   a struct shm_cma: the next len bytes of the frame
 *                 stream are at addr in the producer's address space, to
 *                 be read with process_vm_readv straight into the frame
 *                 being assembled (one copy instead of two). Only into a
 *                 frame whose header has arrived, and only as far as it
 *                 goes; only to a consumer that set cma_ok. The consumer
 *                 moves head past the record once it has read the bytes:
 *                 until then the producer keeps the memory (its send
 *                 requests are not done).
 */
struct shm_cma {
	uint64_t addr;
	uint64_t len;
};

static inline uint64_t shm_align8(uint64_t n)
{
	return (n + 7u) & ~(uint64_t)7u;
}

/* One direction as one side sees it. */
struct shm_ring {
	struct shm_ring_ctl *ctl;
	unsigned char *data;
	uint64_t size; /* power of 2 */
	/* This side's index: tail for the producer, head for the consumer;
	 * the truth (the shared copy is only stored). */
	uint64_t pos;
	/* Consumer: payload bytes left in the record being read, and its
	 * pad after them. */
	uint64_t rec_left;
	uint32_t rec_pad;
	uint16_t rec_type;
	bool in_rec;
	uint64_t cma_addr; /* a CMA record's next byte in the producer */
};

/* r over the ring idx (0 or 1) of a mapping of ring size size at base. */
static inline void shm_ring_init(struct shm_ring *r, void *base, uint64_t size,
				 unsigned idx)
{
	unsigned char *b = base;
	memset(r, 0, sizeof(*r));
	r->ctl = (struct shm_ring_ctl *)(void *)(b + idx * SHM_CTL_SIZE);
	r->data = b + 2u * SHM_CTL_SIZE + idx * size;
	r->size = size;
}

/* Copy n bytes in at ring position at (free-running), wrapping. */
static inline void shm_ring_copy_in(const struct shm_ring *r, uint64_t at,
				    const void *src, uint64_t n)
{
	uint64_t o = at & (r->size - 1), first = r->size - o;
	if (first > n)
		first = n;
	memcpy(r->data + o, src, (size_t)first);
	if (n > first)
		memcpy(r->data, (const unsigned char *)src + first,
		       (size_t)(n - first));
}

/* Copy n bytes out from ring position at, wrapping. */
static inline void shm_ring_copy_out(const struct shm_ring *r, uint64_t at,
				     void *dst, uint64_t n)
{
	uint64_t o = at & (r->size - 1), first = r->size - o;
	if (first > n)
		first = n;
	memcpy(dst, r->data + o, (size_t)first);
	if (n > first)
		memcpy((unsigned char *)dst + first, r->data,
		       (size_t)(n - first));
}

/*
 * Producer: the free bytes, from the consumer's head read now. Acquire:
 * pairs with the consumer's release store of head, after which it no
 * longer reads the bytes we are about to overwrite. False when head is
 * impossible (ahead of our tail, or more than size behind it): the
 * consumer broke the protocol.
 */
static inline bool shm_ring_room(const struct shm_ring *r, uint64_t *room)
{
	uint64_t head = atomic_load_explicit(&r->ctl->head,
					     memory_order_acquire);
	uint64_t used = r->pos - head; /* wraps to huge when ahead */
	if (used > r->size)
		return false;
	*room = r->size - used;
	return true;
}

/* Producer: the header of a record of len bytes at pos (the caller
 * checked room for shm_align8(8 + len)). */
static inline void shm_ring_put_hdr(const struct shm_ring *r, uint32_t type,
				    uint32_t len)
{
	struct shm_rec h = {
		.len = len, .type = (uint16_t)type, .magic = SHM_REC_MAGIC};
	shm_ring_copy_in(r, r->pos, &h, sizeof(h));
}

/* Producer: publish everything up to pos. Release: the record bytes
 * written before it are visible to a consumer that acquires the tail. */
static inline void shm_ring_publish(const struct shm_ring *r)
{
	atomic_store_explicit(&r->ctl->tail, r->pos, memory_order_release);
}

/*
 * Consumer: the bytes published past our head, from the producer's tail
 * read now. Acquire: pairs with the producer's release store of tail, so
 * the record bytes before it are visible. False when tail is impossible
 * (behind our head, more than size ahead, or not a multiple of 8).
 */
static inline bool shm_ring_avail(const struct shm_ring *r, uint64_t *avail)
{
	uint64_t tail = atomic_load_explicit(&r->ctl->tail,
					     memory_order_acquire);
	uint64_t n = tail - r->pos;
	if (n > r->size || (tail & 7u) != 0)
		return false;
	*avail = n;
	return true;
}

/* Consumer: hand the bytes up to pos back to the producer. Release: our
 * reads of them come before the producer may overwrite them. */
static inline void shm_ring_release(const struct shm_ring *r)
{
	atomic_store_explicit(&r->ctl->head, r->pos, memory_order_release);
}

/* Why a consumer refused what a producer wrote (for tw_conn.why). */
enum shm_ring_err {
	SHM_RING_OK,
	SHM_RING_BAD_TAIL,  /* tail behind head, past size, unaligned */
	SHM_RING_BAD_REC,   /* record header: magic, type */
	SHM_RING_BAD_LEN,   /* record longer than the ring or than what
			      * was published */
	SHM_RING_SHORT_HDR, /* fewer than 8 bytes published at a record
			      * boundary */
	SHM_RING_BAD_CMA,   /* a CMA record the consumer did not ask for,
			      * of another length, or wrapping addresses */
};

/*
 * Consumer: at a record boundary with avail bytes published, read and
 * check the next record's header. Sets r->rec_type, rec_left, rec_pad,
 * in_rec; *type gets the type. The record must be published whole
 * (header, payload, pad), and no longer than the ring can hold. A DATA
 * record's header is passed (pos moves 8 on); a CMA record stays where
 * it is until its bytes are read (shm_ring_cma_took), and only a
 * consumer that announced cma_ok takes one.
 */
static inline enum shm_ring_err shm_ring_next_rec(struct shm_ring *r,
						  uint64_t avail, bool cma_ok,
						  uint32_t *type)
{
	if (avail < sizeof(struct shm_rec))
		return SHM_RING_SHORT_HDR;
	struct shm_rec h;
	shm_ring_copy_out(r, r->pos, &h, sizeof(h));
	if (h.magic != SHM_REC_MAGIC ||
	    (h.type != SHM_REC_DATA && h.type != SHM_REC_CMA))
		return SHM_RING_BAD_REC;
	uint64_t whole = sizeof(h) + shm_align8(h.len);
	if (whole > r->size || whole > avail)
		return SHM_RING_BAD_LEN;
	r->rec_type = h.type;
	*type = h.type;
	if (h.type == SHM_REC_CMA) {
		struct shm_cma d;
		if (!cma_ok || h.len != sizeof(d))
			return SHM_RING_BAD_CMA;
		shm_ring_copy_out(r, r->pos + sizeof(h), &d, sizeof(d));
		if (d.len == 0 || d.addr + d.len < d.addr)
			return SHM_RING_BAD_CMA;
		r->cma_addr = d.addr;
		r->rec_left = d.len;
		r->rec_pad = 0;
		r->in_rec = true;
		return SHM_RING_OK;
	}
	r->pos += sizeof(h);
	r->rec_left = h.len;
	r->rec_pad = (uint32_t)(shm_align8(h.len) - h.len);
	r->in_rec = h.len != 0; /* an empty record ends here */
	return SHM_RING_OK;
}

/* Consumer: n of a CMA record's bytes were read; after the last, the
 * record is passed. */
static inline void shm_ring_cma_took(struct shm_ring *r, uint64_t n)
{
	r->cma_addr += n;
	r->rec_left -= n;
	if (r->rec_left == 0) {
		r->pos += sizeof(struct shm_rec) + sizeof(struct shm_cma);
		r->in_rec = false;
	}
}

/* Consumer: n payload bytes of the current record were taken. */
static inline void shm_ring_took(struct shm_ring *r, uint64_t n)
{
	r->pos += n;
	r->rec_left -= n;
	if (r->rec_left == 0) {
		r->pos += r->rec_pad;
		r->in_rec = false;
	}
}

/* Consumer: the payload bytes of the current record that lie contiguous
 * from pos (up to the ring's end). */
static inline uint64_t shm_ring_span(const struct shm_ring *r)
{
	uint64_t o = r->pos & (r->size - 1), first = r->size - o;
	return r->rec_left < first ? r->rec_left : first;
}

static inline const unsigned char *shm_ring_at(const struct shm_ring *r)
{
	return r->data + (r->pos & (r->size - 1));
}

#endif
