/* Internal: strict UTF-8 validation and decoding, shared by values and the wire decoder. */
#ifndef TW_RPC_UTF8_H
#define TW_RPC_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * True when s[0 .. len) is well-formed UTF-8 (RFC 3629): no overlong forms,
 * no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
 * sequence. NUL bytes are valid (U+0000). s may be NULL when len is 0.
 */
bool tw_utf8_valid(const char *s, size_t len);

/*
 * Decode the code point starting at s[0] (len > 0 bytes available).
 * Returns the length of the sequence (1..4) and sets *cp, or 0 when the
 * bytes at s do not start a well-formed sequence.
 */
size_t tw_utf8_decode(const char *s, size_t len, uint32_t *cp);

#endif
