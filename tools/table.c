/* Human-readable output: aligned tables and key/value blocks. */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Width of the key column of tool_print_field ("segment size:" + 2). */
#define FIELD_WIDTH 15

/* Start an empty table of NCOLS columns.  HEADERS (NCOLS strings) and
 * ALIGN (NCOLS letters) are not copied and must outlive the table.
 */
void
tool_table_init (struct tool_table *t, size_t ncols, const char *const *headers,
                 const char *align)
{
  assert (ncols > 0);
  assert (strlen (align) == ncols);
  t->ncols = ncols;
  t->headers = headers;
  t->align = align;
  t->cells = NULL;
  t->nrows = 0;
  t->cap = 0;
}

/* Copy S with control characters and invalid UTF-8 replaced by '?' into
 * BUF of LEN bytes (truncating at a character boundary).
 */
void
tool_sanitize (const char *s, char *buf, size_t len)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, n;

  assert (len > 0);
  while (*p) {
    n = tool_utf8_length (p);
    if (n == 0 || *p < 0x20 || *p == 0x7f) {
      n = 1;
      if (i + 1 >= len)
        break;
      buf[i++] = '?';
    }
    else {
      if (i + n >= len)
        break;
      memcpy (&buf[i], p, n);
      i += n;
    }
    p += n;
  }
  buf[i] = '\0';
}

/* A sanitized malloc'd copy of S, or NULL when out of memory. */
static char *
sanitized_copy (const char *s)
{
  size_t len = strlen (s) + 1;
  char *copy = malloc (len);

  if (copy)
    tool_sanitize (s, copy, len);
  return copy;
}

/* Append one row; the variable arguments are NCOLS const char *. */
int
tool_table_add_row (struct tool_table *t, ...)
{
  va_list ap;
  size_t i, base;

  if (t->nrows == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    char **cells = reallocarray (t->cells, cap * t->ncols, sizeof (char *));

    if (cells == NULL)
      return -ENOMEM;
    t->cells = cells;
    t->cap = cap;
  }

  base = t->nrows * t->ncols;
  va_start (ap, t);
  for (i = 0; i < t->ncols; ++i) {
    const char *s = va_arg (ap, const char *);

    t->cells[base + i] = sanitized_copy (s);
    if (t->cells[base + i] == NULL) {
      va_end (ap);
      while (i > 0)
        free (t->cells[base + --i]);
      return -ENOMEM;
    }
  }
  va_end (ap);
  t->nrows++;
  return 0;
}

/* Columns S occupies on a terminal: UTF-8 continuation bytes take none. */
static size_t
display_width (const char *s)
{
  size_t w = 0;

  for (; *s; ++s)
    if (((unsigned char)*s & 0xc0) != 0x80)
      w++;
  return w;
}

/* Print one row; CELLS holds NCOLS strings, WIDTHS their column widths.
 * The last column is not padded, so lines have no trailing blanks.
 */
static void
print_row (const struct tool_table *t, const char *const *cells,
           const size_t *widths, FILE *fp)
{
  size_t i, w, pad;

  for (i = 0; i < t->ncols; ++i) {
    bool last = i + 1 == t->ncols;

    w = display_width (cells[i]);
    pad = widths[i] > w ? widths[i] - w : 0;
    if (i > 0)
      fputs ("  ", fp);
    if (t->align[i] == 'r')
      fprintf (fp, "%*s", (int)pad, "");
    fputs (cells[i], fp);
    if (t->align[i] != 'r' && !last)
      fprintf (fp, "%*s", (int)pad, "");
  }
  fputc ('\n', fp);
}

/* Print the header line and every row with aligned columns. */
void
tool_table_print (const struct tool_table *t, FILE *fp)
{
  size_t widths[16];
  size_t r, i, w;

  assert (t->ncols <= sizeof widths / sizeof widths[0]);
  for (i = 0; i < t->ncols; ++i)
    widths[i] = display_width (t->headers[i]);
  for (r = 0; r < t->nrows; ++r)
    for (i = 0; i < t->ncols; ++i) {
      w = display_width (t->cells[r * t->ncols + i]);
      if (w > widths[i])
        widths[i] = w;
    }

  print_row (t, t->headers, widths, fp);
  for (r = 0; r < t->nrows; ++r)
    print_row (t, (const char *const *)&t->cells[r * t->ncols], widths, fp);
}

/* Free the cells (the table itself belongs to the caller). */
void
tool_table_free (struct tool_table *t)
{
  size_t i;

  for (i = 0; i < t->nrows * t->ncols; ++i)
    free (t->cells[i]);
  free (t->cells);
  t->cells = NULL;
  t->nrows = t->cap = 0;
}

/* Print "KEY:" padded to FIELD_WIDTH, then the value and a newline. */
void
tool_print_field (FILE *fp, const char *key, const char *fmt, ...)
{
  va_list ap;

  fprintf (fp, "%s:%*s", key,
           (int)(FIELD_WIDTH > strlen (key) + 1 ? FIELD_WIDTH - strlen (key) - 1
                                                : 1),
           "");
  va_start (ap, fmt);
  vfprintf (fp, fmt, ap);
  va_end (ap);
  fputc ('\n', fp);
}
