/* LMDB return codes as -errno, the one mapping for the catalog and the
 * storage server's index.  Include after <lmdb.h>.
 */

#ifndef TESSERA_MDB_ERRNO_H
#define TESSERA_MDB_ERRNO_H

#include <errno.h>

/* RC from an LMDB call as 0 or -errno: MDB_NOTFOUND is -ENOENT,
 * MDB_KEYEXIST -EEXIST, MDB_MAP_FULL -ENOSPC; a system error, which
 * LMDB returns as a positive errno (a failed open, read or sync), is
 * passed on; every other LMDB code (corruption, version mismatch, a
 * full reader table...) is -EIO, and callers log mdb_strerror (RC).
 */
static inline int
mdb_errno (int rc)
{
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return -ENOENT;
  case MDB_KEYEXIST:
    return -EEXIST;
  case MDB_MAP_FULL:
    return -ENOSPC;
  default:
    return rc > 0 ? -rc : -EIO;
  }
}

#endif /* TESSERA_MDB_ERRNO_H */
