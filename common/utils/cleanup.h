/* Scope-bound cleanup helpers on __attribute__ ((cleanup)).
 *
 * Hand ownership out of a scope by returning the value and resetting the
 * variable to NULL (pointers) or -1 (fds).
 */

#ifndef TESSERA_UTILS_CLEANUP_H
#define TESSERA_UTILS_CLEANUP_H

#include <assert.h>
#include <pthread.h>
#include <stdio.h>

extern void cleanup_free (void *ptr);
extern void cleanup_close (int *fd);
extern void cleanup_fclose (FILE **fp);
extern void cleanup_unlock (pthread_mutex_t **mutex);

#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))
#define CLEANUP_FCLOSE __attribute__ ((cleanup (cleanup_fclose)))

#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex) \
  CLEANUP_UNLOCK pthread_mutex_t *_lock __attribute__ ((unused)) = (mutex); \
  do { \
    int _r = pthread_mutex_lock (_lock); \
    assert (!_r); \
  } while (0)
#define CLEANUP_UNLOCK __attribute__ ((cleanup (cleanup_unlock)))

/* Only where LMDB is used (catalog/, the storage server's index). */
#ifdef MDB_VERSION_MAJOR
static inline void
cleanup_mdb_txn_abort (MDB_txn **txn)
{
  if (*txn)
    mdb_txn_abort (*txn);
}
#define CLEANUP_MDB_TXN_ABORT __attribute__ ((cleanup (cleanup_mdb_txn_abort)))
#endif

#endif /* TESSERA_UTILS_CLEANUP_H */
