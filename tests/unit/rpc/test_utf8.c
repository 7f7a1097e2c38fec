/* Unit tests for rpc/utf8.c: strict UTF-8 (RFC 3629), every invalid class. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "rpc/utf8.h"

/* The decoder the RFC's grammar gives, written the slow, obvious way:
 * sequence length from the lead byte, continuation bytes 10xxxxxx, then
 * the code point must need that length (no overlong), not be a surrogate
 * and not pass U+10FFFF. Returns the length, or 0. */
static size_t ref_decode(const uint8_t *p, size_t len, uint32_t *cp)
{
	if (len == 0)
		return 0;
	size_t n;
	uint32_t v, min;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	} else if ((p[0] & 0xE0) == 0xC0) {
		n = 2, v = p[0] & 0x1Fu, min = 0x80;
	} else if ((p[0] & 0xF0) == 0xE0) {
		n = 3, v = p[0] & 0x0Fu, min = 0x800;
	} else if ((p[0] & 0xF8) == 0xF0) {
		n = 4, v = p[0] & 0x07u, min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3Fu);
	}
	if (v < min || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
		return 0;
	*cp = v;
	return n;
}

static size_t dec(const char *s, size_t len, uint32_t *cp)
{
	*cp = 0xFFFFFFFFu;
	return tw_utf8_decode(s, len, cp);
}

struct seq {
	const char *what;
	const char *bytes;
	size_t len;
	uint32_t cp; /* valid ones: the code point */
};

#define SEQ(what, lit, cp)                                                     \
	{                                                                      \
		what, lit, sizeof(lit) - 1, cp                                 \
	}

static const struct seq valid[] = {
	SEQ("NUL", "\x00", 0x0),
	SEQ("DEL", "\x7f", 0x7F),
	SEQ("first 2-byte", "\xc2\x80", 0x80),
	SEQ("last 2-byte", "\xdf\xbf", 0x7FF),
	SEQ("first 3-byte", "\xe0\xa0\x80", 0x800),
	SEQ("before the surrogates", "\xed\x9f\xbf", 0xD7FF),
	SEQ("after the surrogates", "\xee\x80\x80", 0xE000),
	SEQ("replacement character", "\xef\xbf\xbd", 0xFFFD),
	SEQ("last 3-byte (a noncharacter, still valid)", "\xef\xbf\xbf",
	    0xFFFF),
	SEQ("first 4-byte", "\xf0\x90\x80\x80", 0x10000),
	SEQ("an emoji", "\xf0\x9f\x98\x80", 0x1F600),
	SEQ("the last code point", "\xf4\x8f\xbf\xbf", 0x10FFFF),
};

static const struct seq invalid[] = {
	/* overlong forms */
	SEQ("overlong NUL (C0 80)", "\xc0\x80", 0),
	SEQ("overlong 2-byte (C1 BF)", "\xc1\xbf", 0),
	SEQ("overlong 3-byte NUL", "\xe0\x80\x80", 0),
	SEQ("overlong 3-byte U+07FF", "\xe0\x9f\xbf", 0),
	SEQ("overlong 4-byte NUL", "\xf0\x80\x80\x80", 0),
	SEQ("overlong 4-byte U+FFFF", "\xf0\x8f\xbf\xbf", 0),
	/* surrogates */
	SEQ("surrogate U+D800", "\xed\xa0\x80", 0),
	SEQ("surrogate U+DBFF", "\xed\xaf\xbf", 0),
	SEQ("surrogate U+DC00", "\xed\xb0\x80", 0),
	SEQ("surrogate U+DFFF", "\xed\xbf\xbf", 0),
	SEQ("surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xb8\x80", 0),
	/* above U+10FFFF */
	SEQ("U+110000", "\xf4\x90\x80\x80", 0),
	SEQ("F5 lead", "\xf5\x80\x80\x80", 0),
	SEQ("F7 lead", "\xf7\xbf\xbf\xbf", 0),
	SEQ("5-byte form", "\xf8\x88\x80\x80\x80", 0),
	SEQ("6-byte form", "\xfc\x84\x80\x80\x80\x80", 0),
	SEQ("FE", "\xfe", 0),
	SEQ("FF", "\xff", 0),
	/* truncated */
	SEQ("2-byte, lead only", "\xc2", 0),
	SEQ("3-byte, lead only", "\xe1", 0),
	SEQ("3-byte, one continuation", "\xe1\x80", 0),
	SEQ("4-byte, lead only", "\xf1", 0),
	SEQ("4-byte, two continuations", "\xf1\x80\x80", 0),
	SEQ("4-byte, three continuations of the last", "\xf4\x8f\xbf", 0),
	SEQ("2-byte cut by ASCII", "\xc2\x41", 0),
	SEQ("3-byte cut by ASCII", "\xe1\x80\x41", 0),
	SEQ("4-byte cut by ASCII", "\xf1\x80\x80\x41", 0),
	SEQ("3-byte cut by a new lead", "\xe1\x80\xc2\x80", 0),
	/* stray continuation bytes */
	SEQ("lone 80", "\x80", 0),
	SEQ("lone BF", "\xbf", 0),
	SEQ("two continuations", "\x80\x80", 0),
	SEQ("one continuation too many", "\xc2\x80\x80", 0),
};

Test(utf8, valid_edges_decode_to_their_code_point)
{
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct seq *s = &valid[i];
		uint32_t cp;
		cr_assert_eq(dec(s->bytes, s->len, &cp), s->len, "%s", s->what);
		cr_assert_eq(cp, s->cp, "%s: U+%04X", s->what, cp);
		cr_assert(tw_utf8_valid(s->bytes, s->len), "%s", s->what);
	}
}

Test(utf8, every_invalid_class_is_refused)
{
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		const struct seq *s = &invalid[i];
		cr_assert_not(tw_utf8_valid(s->bytes, s->len), "%s", s->what);
	}
	/* The decoder refuses each at its first byte, but for the one whose
	 * first sequence is whole and good: that one goes wrong after it. */
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		const struct seq *s = &invalid[i];
		uint32_t cp;
		size_t n = dec(s->bytes, s->len, &cp);
		if (strcmp(s->what, "one continuation too many") == 0)
			cr_assert(n == 2 && cp == 0x80, "%s", s->what);
		else
			cr_assert_eq(n, 0, "%s: decoded as %zu bytes, U+%04X",
				     s->what, n, cp);
	}
}

Test(utf8, empty_and_null)
{
	uint32_t cp;
	cr_assert(tw_utf8_valid(NULL, 0));
	cr_assert(tw_utf8_valid("", 0));
	cr_assert_not(tw_utf8_valid(NULL, 1), "NULL with bytes to read");
	cr_assert_eq(dec(NULL, 0, &cp), 0);
	cr_assert_eq(dec("a", 0, &cp), 0, "nothing available");
	/* NUL is U+0000 inside a string, not its end */
	cr_assert(tw_utf8_valid("a\0b\0\0c\xc2\x80", 8));
}

/* Every one- and two-byte input, and every three-byte input, against the
 * reference decoder: same length, same code point. */
Test(utf8, decoder_matches_the_grammar_up_to_three_bytes)
{
	uint8_t b[3];
	for (uint32_t x = 0; x < (1u << 24); x++) {
		b[0] = (uint8_t)(x >> 16);
		b[1] = (uint8_t)(x >> 8);
		b[2] = (uint8_t)x;
		for (size_t len = 1; len <= 3; len++) {
			/* shorter inputs: only once per distinct prefix */
			if (len < 3 && (x & ((1u << (8 * (3 - len))) - 1)) != 0)
				continue;
			uint32_t want = 0, got = 0;
			size_t r = ref_decode(b, len, &want);
			size_t n = dec((const char *)b, len, &got);
			if (n != r || (r && got != want))
				cr_assert(false,
					  "%02x %02x %02x (len %zu): %zu "
					  "bytes U+%04X, want %zu U+%04X",
					  b[0], b[1], b[2], len, n, got, r,
					  want);
		}
	}
}

/* Four-byte leads with every second byte and the continuation
 * boundaries in the last two. */
Test(utf8, decoder_matches_the_grammar_for_four_bytes)
{
	static const uint8_t tail[] = {0x00, 0x7f, 0x80, 0x8f,
				       0x90, 0xbf, 0xc0, 0xff};
	for (unsigned lead = 0xf0; lead <= 0xff; lead++)
		for (unsigned b1 = 0; b1 < 256; b1++)
			for (size_t i = 0; i < sizeof(tail); i++)
				for (size_t j = 0; j < sizeof(tail); j++) {
					uint8_t b[4] = {(uint8_t)lead,
							(uint8_t)b1, tail[i],
							tail[j]};
					uint32_t want = 0, got = 0;
					size_t r = ref_decode(b, 4, &want);
					size_t n = dec((const char *)b, 4,
						       &got);
					cr_assert(n == r && (!r || got == want),
						  "%02x %02x %02x %02x: %zu "
						  "bytes, want %zu",
						  b[0], b[1], b[2], b[3], n, r);
				}
}

/* The validator skips ASCII a word at a time and may test the whole
 * string at once: a bad sequence must be found at every position and
 * alignment, and a good one accepted, whatever ASCII surrounds it. */
Test(utf8, every_position_in_ascii_text)
{
	char buf[64];
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		const struct seq *s = &invalid[i];
		for (size_t before = 0; before < 20; before++)
			for (size_t after = 0; after < 20; after++) {
				size_t len = before + s->len + after;
				memset(buf, 'x', len);
				memcpy(buf + before, s->bytes, s->len);
				cr_assert_not(tw_utf8_valid(buf, len),
					      "%s after %zu and before %zu "
					      "ASCII bytes",
					      s->what, before, after);
			}
	}
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct seq *s = &valid[i];
		for (size_t before = 0; before < 20; before++)
			for (size_t after = 0; after < 20; after++) {
				size_t len = before + s->len + after;
				memset(buf, 'x', len);
				memcpy(buf + before, s->bytes, s->len);
				cr_assert(tw_utf8_valid(buf, len),
					  "%s after %zu and before %zu ASCII "
					  "bytes",
					  s->what, before, after);
			}
	}
	/* Only the given length counts: a bad byte just past it does not. */
	memset(buf, 'y', sizeof(buf));
	buf[16] = (char)0xff;
	cr_assert(tw_utf8_valid(buf, 16));
	cr_assert_not(tw_utf8_valid(buf, 17));
}

/* Long mixed text: every valid sequence in turn, with ASCII runs of
 * varying length between them; then each of them cut short at the end. */
Test(utf8, long_mixed_text)
{
	char buf[4096];
	size_t len = 0;
	for (int round = 0; round < 20; round++)
		for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
			for (int k = 0; k < round % 11; k++)
				buf[len++] = (char)('a' + k);
			memcpy(buf + len, valid[i].bytes, valid[i].len);
			len += valid[i].len;
		}
	cr_assert_lt(len, sizeof(buf));
	cr_assert(tw_utf8_valid(buf, len));
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		if (valid[i].len < 2)
			continue;
		memcpy(buf + len, valid[i].bytes, valid[i].len);
		for (size_t cut = 1; cut < valid[i].len; cut++)
			cr_assert_not(tw_utf8_valid(buf, len + cut),
				      "%s cut to %zu bytes at the end",
				      valid[i].what, cut);
		cr_assert(tw_utf8_valid(buf, len + valid[i].len));
	}
}
