/* MIN and MAX that evaluate their arguments once. */

#ifndef TESSERA_INCLUDE_MINMAX_H
#define TESSERA_INCLUDE_MINMAX_H

#undef MIN
#define MIN(a, b) \
  ({ \
    __typeof__ (a) _a = (a); \
    __typeof__ (b) _b = (b); \
    _a < _b ? _a : _b; \
  })
#undef MAX
#define MAX(a, b) \
  ({ \
    __typeof__ (a) _a = (a); \
    __typeof__ (b) _b = (b); \
    _a > _b ? _a : _b; \
  })

#endif /* TESSERA_INCLUDE_MINMAX_H */
