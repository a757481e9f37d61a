/* Shared by the fuzz harnesses (fuzz-*.c), their corpus replay driver
 * (replay.c) and the seed generator (make-seeds.c).
 *
 * A harness defines LLVMFuzzerTestOneInput and may define
 * LLVMFuzzerInitialize.  Built with clang -fsanitize=fuzzer it is a
 * libFuzzer target (run-fuzz.sh); linked with replay.c it replays a corpus
 * under any compiler (make check).  Compiled with -DFUZZ_SEEDS it also
 * defines fuzz_make_seeds, which make-seeds.c calls to write valid
 * encodings into a corpus directory.
 */

#ifndef TESSERA_TESTS_FUZZ_H
#define TESSERA_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
extern int LLVMFuzzerInitialize (int *argc, char ***argv);

/* A broken promise of the code under test: say which and abort, so that
 * libFuzzer saves the input and replay fails.
 */
#define FUZZ_FAIL(...) \
  do { \
    fprintf (stderr, "fuzz: %s:%d: ", __FILE__, __LINE__); \
    fprintf (stderr, __VA_ARGS__); \
    fputc ('\n', stderr); \
    abort (); \
  } while (0)

#define FUZZ_CHECK(cond, ...) \
  do { \
    if (!(cond)) \
      FUZZ_FAIL (__VA_ARGS__); \
  } while (0)

#ifdef FUZZ_SEEDS
/* Defined by each harness: write its seeds into DIR with fuzz_write_seed.
 * Returns 0 or -1 (after printing why).
 */
extern int fuzz_make_seeds (const char *dir);
/* Defined in make-seeds.c: write LEN bytes at DATA to DIR/seed-NAME.
 * Returns 0 or -1 (after printing why).
 */
extern int fuzz_write_seed (const char *dir, const char *name, const void *data,
                            size_t len);
#endif

#endif /* TESSERA_TESTS_FUZZ_H */
