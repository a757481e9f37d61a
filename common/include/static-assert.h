/* Compile-time assertions. */

#ifndef TESSERA_INCLUDE_STATIC_ASSERT_H
#define TESSERA_INCLUDE_STATIC_ASSERT_H

#define STATIC_ASSERT(expr, msg) _Static_assert((expr), #msg)

#endif /* TESSERA_INCLUDE_STATIC_ASSERT_H */
