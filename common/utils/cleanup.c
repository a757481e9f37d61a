/* Cleanup functions behind the CLEANUP_* attributes (see cleanup.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cleanup.h"

void
cleanup_free (void *ptr)
{
  free (*(void **)ptr);
}

void
cleanup_close (int *fd)
{
  int saved = errno;

  if (*fd >= 0)
    close (*fd);
  errno = saved;
}

void
cleanup_fclose (FILE **fp)
{
  if (*fp)
    fclose (*fp);
}

void
cleanup_unlock (pthread_mutex_t **mutex)
{
  int r = pthread_mutex_unlock (*mutex);

  assert (!r);
}
