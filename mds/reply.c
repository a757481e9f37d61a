/* Reply builders: every request handler fills its struct mds_reply
 * through these, and loop.c sends it once the handler has returned and
 * mds->lock is released.  They touch nothing but the reply (and the log),
 * so any file may call them, with or without the lock; they call no
 * other file of the MDS.
 */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

#include "internal.h"

/* Fill REP with error STATUS and a message.  Returns 0 so that handlers
 * can "return mds_reply_error (...)" and keep the connection.
 */
int
mds_reply_error (struct mds_reply *rep, uint32_t status, const char *fmt, ...)
{
  va_list ap;

  rep->status = status;
  va_start (ap, fmt);
  vsnprintf (rep->msg, sizeof rep->msg, fmt, ap);
  va_end (ap);
  return 0;
}

/* Like mds_reply_error, with the status mapped from ERR (a negative
 * errno).  Returns 0.
 */
int
mds_reply_errno (struct mds_reply *rep, int err, const char *fmt, ...)
{
  va_list ap;

  rep->status = proto_status_from_errno (-err);
  va_start (ap, fmt);
  vsnprintf (rep->msg, sizeof rep->msg, fmt, ap);
  va_end (ap);
  return 0;
}

/* A decoder of request WHAT failed with ERR.  Malformed payloads close
 * the connection (returns -EBADMSG); running out of memory does not
 * (returns 0).
 */
int
mds_reply_bad (struct mds_reply *rep, int err, const char *what)
{
  if (err == -ENOMEM) {
    log_error ("%s: out of memory", what);
    return mds_reply_error (rep, PROTO_ENOMEM, "%s: out of memory", what);
  }
  mds_reply_error (rep, PROTO_EBADMSG, "%s: malformed request", what);
  return -EBADMSG;
}

/* Fill REP for catalog error ERR met on the object named by FMT
 * ("volume vol0"): the message reads "OBJECT: reason".  Failures of the
 * catalog itself (not a refused request) are logged.  Returns 0.
 */
int
mds_reply_catalog (struct mds_reply *rep, int err, const char *fmt, ...)
{
  char object[PROTO_ERRMSG_MAX / 2];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (object, sizeof object, fmt, ap);
  va_end (ap);
  if (err == -EIO || err == -ENOSPC || err == -ENOMEM)
    log_error ("catalog: %s: %s", object, catalog_strerror (err));
  return mds_reply_errno (rep, err, "%s: %s", object, catalog_strerror (err));
}
