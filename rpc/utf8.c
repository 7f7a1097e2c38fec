/* Strict UTF-8 validation (RFC 3629): what counts as a string on the wire. */
#include <string.h>

#include "utf8.h"

size_t tw_utf8_decode(const char *s, size_t len, uint32_t *cp)
{
	const uint8_t *p = (const uint8_t *)s;
	if (p == NULL || len == 0)
		return 0;

	uint8_t c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}

	/*
	 * The bounds on the second byte are Table 3-7 of the Unicode
	 * standard: they exclude overlong forms (E0 80..9F, F0 80..8F),
	 * surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..),
	 * so the continuation bytes after it only need their top bits checked.
	 * C0, C1 and F5..FF never start a sequence.
	 */
	size_t n;
	uint8_t lo = 0x80, hi = 0xBF;
	uint32_t v;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	v = (v << 6) | (p[1] & 0x3F);
	for (size_t i = 2; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3F);
	}
	*cp = v;
	return n;
}

bool tw_utf8_valid(const char *s, size_t len)
{
	if (len == 0)
		return true;
	if (s == NULL)
		return false;

	/* Names and keys are nearly always ASCII: with 8 bytes or more, OR
	 * every word together, the last one overlapping the one before, and
	 * look at the high bits once. Anything else takes the loop below. */
	if (len >= 8) {
		uint64_t acc, w;
		memcpy(&acc, s + len - 8, 8);
		for (size_t k = 0; k + 8 < len; k += 8) {
			memcpy(&w, s + k, 8);
			acc |= w;
		}
		if (!(acc & UINT64_C(0x8080808080808080)))
			return true;
	}

	size_t i = 0;
	while (i < len) {
		/* Most keys and names are ASCII: skip 8 bytes per step while
		 * no high bit is set. memcpy keeps the load alignment-safe. */
		while (len - i >= 8) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & UINT64_C(0x8080808080808080))
				break;
			i += 8;
		}
		if (i == len)
			break;
		if ((uint8_t)s[i] < 0x80) {
			i++; /* the ASCII tail, without a call per byte */
			continue;
		}
		uint32_t cp;
		size_t n = tw_utf8_decode(s + i, len - i, &cp);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}
