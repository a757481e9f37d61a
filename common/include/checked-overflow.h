/* Overflow-checked arithmetic for sizes and offsets from the wire or the
 * command line.  Each returns true if the result overflowed (then *R is
 * unspecified).
 */

#ifndef TESSERA_INCLUDE_CHECKED_OVERFLOW_H
#define TESSERA_INCLUDE_CHECKED_OVERFLOW_H

#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define SUB_OVERFLOW(a, b, r) __builtin_sub_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))

#endif /* TESSERA_INCLUDE_CHECKED_OVERFLOW_H */
