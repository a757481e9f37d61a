/* What a storage server keeps so that the MDS catalog can be rebuilt
 * from the storage servers alone (tessera-mds --rebuild): SEG_DESCRIBE
 * lists the segments this server holds with what their records say
 * (volume, index in the volume, generation, last epoch, state) and the
 * fences; TABLES_PUT and TABLES_GET store and return the cluster tables
 * (volumes, servers, id counters) the MDS pushes to every server.
 *
 * The tables are an opaque blob with a version.  The ring thread keeps
 * a copy of the stored one (loaded at start-up) to answer TABLES_GET and
 * to turn away older versions at once; a newer one goes to the index
 * worker, which stores it in the index's meta database only if it is
 * still newer than what is there (two puts may race), and the reply
 * waits for that commit.  Ring thread.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#include "internal.h"

/* Load the stored tables into LOOP.  Start-up, ring thread. */
int
ss_tables_load (struct ss_loop *loop, struct ss_index *idx)
{
  int r;

  r = ss_index_get_tables (idx, &loop->tables_version, &loop->tables_blob,
                           &loop->tables_len);
  if (r < 0)
    log_error ("index: reading the cluster tables: %s", strerror (-r));
  else if (loop->tables_version > 0)
    log_info ("store: cluster tables version %" PRIu64 " (%" PRIu32 " bytes)",
              loop->tables_version, loop->tables_len);
  return r;
}

/* Free the tables (at exit). */
void
ss_tables_free (struct ss_loop *loop)
{
  free (loop->tables_blob);
  loop->tables_blob = NULL;
  loop->tables_len = 0;
}

/* Answer R with the version held now (TABLES_PUT's reply). */
static void
tables_reply_version (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_tables t = { .version = loop->tables_version };
  struct proto_wbuf wb = { 0 };

  proto_encode_tables (&t, &wb);
  if (wb.err) {
    proto_wbuf_free (&wb);
    ss_req_error (loop, r, PROTO_ENOMEM, "TABLES_PUT: %s", strerror (ENOMEM));
    return;
  }
  ss_req_reply (loop, r, wb.data, wb.len, wb.data);
}

/* The index committed (or failed to commit) R's tables.  R->buf holds
 * the copy made for the ring's view.
 */
static void
tables_stored (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_req *r = SS_CONTAINER_OF (iop, struct ss_req, iop);
  uint8_t *copy = r->buf;

  r->buf = NULL;
  if (iop->err < 0) {
    free (copy);
    ss_req_error (loop, r, proto_status_from_errno (-iop->err),
                  "TABLES_PUT: version %" PRIu64 ": index update: %s",
                  iop->tables_version, strerror (-iop->err));
    return;
  }
  /* Another put may have committed a newer version in between. */
  if (iop->tables_version > loop->tables_version) {
    free (loop->tables_blob);
    loop->tables_blob = copy;
    loop->tables_len = iop->tables_len;
    loop->tables_version = iop->tables_version;
    log_info ("store: cluster tables version %" PRIu64 " stored",
              loop->tables_version);
  }
  else
    free (copy);
  tables_reply_version (loop, r);
}

/* TABLES_PUT: store the tables durably if they are newer than the ones
 * held; answer with the version held then.
 */
void
ss_req_tables_put (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_tables t;
  uint8_t *copy = NULL;

  if (proto_decode_tables (r->payload, r->hdr.length, &t) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "TABLES_PUT: payload of %" PRIu32 " bytes", r->hdr.length);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "TABLES_PUT: FUA flag not allowed");
    return;
  }
  if (t.version <= loop->tables_version) {
    tables_reply_version (loop, r);
    return;
  }
  if (t.len > 0) {
    copy = malloc (t.len);
    if (copy == NULL) {
      ss_req_error (loop, r, PROTO_ENOMEM, "TABLES_PUT: %s", strerror (ENOMEM));
      return;
    }
    memcpy (copy, t.blob, t.len);
  }
  r->buf = copy;
  memset (&r->iop, 0, sizeof r->iop);
  r->iop.type = SS_INDEX_TABLES;
  r->iop.tables_version = t.version;
  r->iop.tables_blob = copy;
  r->iop.tables_len = t.len;
  r->iop.done = tables_stored;
  ss_index_submit_op (loop, &r->iop);
}

/* TABLES_GET: the tables held (version 0, empty: none). */
void
ss_req_tables_get (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_tables t = { .version = loop->tables_version,
                            .blob = loop->tables_blob,
                            .len = loop->tables_len };
  struct proto_wbuf wb = { 0 };

  if (r->hdr.length != 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "TABLES_GET: payload of %" PRIu32 " bytes, expected 0",
                  r->hdr.length);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "TABLES_GET: FUA flag not allowed");
    return;
  }
  proto_encode_tables (&t, &wb);
  if (wb.err) {
    proto_wbuf_free (&wb);
    ss_req_error (loop, r, PROTO_ENOMEM, "TABLES_GET: %s", strerror (ENOMEM));
    return;
  }
  ss_req_reply (loop, r, wb.data, wb.len, wb.data);
}

/* qsort: segment entries by id. */
static int
cmp_seg (const void *a, const void *b)
{
  const struct ss_seg *x = *(struct ss_seg *const *)a;
  const struct ss_seg *y = *(struct ss_seg *const *)b;

  return x->id < y->id ? -1 : x->id > y->id;
}

/* SEG_DESCRIBE: a page of the segments held, in id order, with what
 * their records say; the fences on the first page.  Segments being
 * created or deleted are not on it: their records are not settled.
 */
void
ss_req_describe (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_describe_request q;
  struct proto_describe d = { 0 };
  struct proto_wbuf wb = { 0 };
  struct ss_seg **all = NULL;
  struct proto_fence *fences = NULL;
  size_t n = 0, cap = 0, i, max;

  if (proto_decode_describe_request (r->payload, r->hdr.length, &q) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_DESCRIBE: malformed request (max must be at least 1)");
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_DESCRIBE: FUA flag not allowed");
    return;
  }
  for (i = 0; i < loop->segs.nbuckets; i++) {
    struct ss_seg *s;

    for (s = loop->segs.buckets[i]; s; s = s->hnext) {
      if (s->id <= q.start_after || (s->busy & (SS_SEG_NEW | SS_SEG_DELETING)))
        continue;
      if (n == cap) {
        size_t c = cap ? cap * 2 : 64;
        struct ss_seg **p = realloc (all, c * sizeof *p);

        if (p == NULL)
          goto nomem;
        all = p;
        cap = c;
      }
      all[n++] = s;
    }
  }
  if (n > 1)
    qsort (all, n, sizeof *all, cmp_seg);
  max = q.max < PROTO_LIST_MAX ? q.max : PROTO_LIST_MAX;
  d.n = n < max ? n : max;
  if (d.n > 0 && (d.segs = calloc (d.n, sizeof *d.segs)) == NULL)
    goto nomem;
  for (i = 0; i < d.n; i++) {
    d.segs[i].segment = all[i]->id;
    d.segs[i].volume = all[i]->volume;
    d.segs[i].index = all[i]->index;
    d.segs[i].gen = all[i]->gen;
    d.segs[i].epoch = all[i]->epoch;
    d.segs[i].state = all[i]->state;
  }
  if (q.start_after == 0 && loop->nfences > 0) {
    d.nfences = loop->nfences < PROTO_DESCRIBE_FENCES_MAX
                    ? loop->nfences
                    : PROTO_DESCRIBE_FENCES_MAX;
    fences = calloc (d.nfences, sizeof *fences);
    if (fences == NULL)
      goto nomem;
    for (i = 0; i < d.nfences; i++) {
      fences[i].volume = loop->fences[i].volume;
      fences[i].epoch = loop->fences[i].epoch;
    }
    d.fences = fences;
  }
  proto_encode_describe (&d, &wb);
  free (all);
  free (d.segs);
  free (fences);
  if (wb.err) {
    proto_wbuf_free (&wb);
    ss_req_error (loop, r, PROTO_ENOMEM, "SEG_DESCRIBE: %s", strerror (ENOMEM));
    return;
  }
  ss_req_reply (loop, r, wb.data, wb.len, wb.data);
  return;

nomem:
  free (all);
  free (d.segs);
  free (fences);
  ss_req_error (loop, r, PROTO_ENOMEM, "SEG_DESCRIBE: %s", strerror (ENOMEM));
}
