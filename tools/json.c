/* A small streaming JSON writer for --json output.
 *
 * It writes one document, pretty-printed, straight to a FILE.  Strings
 * are escaped as RFC 8259 requires; bytes that are not valid UTF-8 (a
 * volume name is any bytes but NUL) become U+FFFD so that the output is
 * always valid JSON.
 */

#include <config.h>

#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "internal.h"

/* Start a writer on FP. */
void
tool_json_init (struct tool_json *j, FILE *fp)
{
  j->fp = fp;
  j->depth = 0;
  j->after_key = false;
  j->empty[0] = true;
}

/* Newline and indentation for the current depth. */
static void
newline (struct tool_json *j)
{
  unsigned i;

  fputc ('\n', j->fp);
  for (i = 0; i < j->depth; ++i)
    fputs ("  ", j->fp);
}

/* Called before every value and every key: writes the separating comma
 * and the line break, unless the value follows its key.
 */
static void
before_item (struct tool_json *j)
{
  if (j->after_key) {
    j->after_key = false;
    return;
  }
  /* At the top level there is only one value. */
  assert (j->depth > 0 || j->empty[0]);
  if (!j->empty[j->depth])
    fputc (',', j->fp);
  j->empty[j->depth] = false;
  if (j->depth > 0)
    newline (j);
}

/* Open a container with character OPEN_CH. */
static void
begin (struct tool_json *j, char open_ch)
{
  before_item (j);
  fputc (open_ch, j->fp);
  assert (j->depth + 1 < TOOL_JSON_MAX_DEPTH);
  j->depth++;
  j->empty[j->depth] = true;
}

/* Close the current container with character CLOSE_CH. */
static void
end (struct tool_json *j, char close_ch)
{
  bool was_empty;

  assert (j->depth > 0);
  assert (!j->after_key);
  was_empty = j->empty[j->depth];
  j->depth--;
  if (!was_empty)
    newline (j);
  fputc (close_ch, j->fp);
}

/* Begin an object "{". */
void
tool_json_begin_object (struct tool_json *j)
{
  begin (j, '{');
}

/* End an object "}". */
void
tool_json_end_object (struct tool_json *j)
{
  end (j, '}');
}

/* Begin an array "[". */
void
tool_json_begin_array (struct tool_json *j)
{
  begin (j, '[');
}

/* End an array "]". */
void
tool_json_end_array (struct tool_json *j)
{
  end (j, ']');
}

/* Write an object key; the next call must write its value. */
void
tool_json_key (struct tool_json *j, const char *key)
{
  assert (j->depth > 0);
  assert (!j->after_key);
  before_item (j);
  tool_json_put_string (j->fp, key);
  fputs (": ", j->fp);
  j->after_key = true;
}

/* Write a string value. */
void
tool_json_string (struct tool_json *j, const char *s)
{
  before_item (j);
  tool_json_put_string (j->fp, s);
}

/* Write an unsigned integer value. */
void
tool_json_uint (struct tool_json *j, uint64_t v)
{
  before_item (j);
  fprintf (j->fp, "%" PRIu64, v);
}

/* Write true or false. */
void
tool_json_bool (struct tool_json *j, bool v)
{
  before_item (j);
  fputs (v ? "true" : "false", j->fp);
}

/* Write "KEY": "S". */
void
tool_json_kv_string (struct tool_json *j, const char *key, const char *s)
{
  tool_json_key (j, key);
  tool_json_string (j, s);
}

/* Write "KEY": V. */
void
tool_json_kv_uint (struct tool_json *j, const char *key, uint64_t v)
{
  tool_json_key (j, key);
  tool_json_uint (j, v);
}

/* Write "KEY": true|false. */
void
tool_json_kv_bool (struct tool_json *j, const char *key, bool v)
{
  tool_json_key (j, key);
  tool_json_bool (j, v);
}

/* Finish the document with a newline. */
void
tool_json_finish (struct tool_json *j)
{
  assert (j->depth == 0);
  assert (!j->after_key);
  assert (!j->empty[0]);
  fputc ('\n', j->fp);
}

/* Length of the valid UTF-8 sequence starting at S (1 to 4), or 0 if the
 * bytes there are not valid UTF-8 (overlong forms, surrogates and code
 * points past U+10FFFF included).  S is NUL-terminated, and NUL is never a
 * continuation byte, so reading stops at the end of the string.
 */
size_t
tool_utf8_length (const unsigned char *s)
{
  unsigned char c = s[0];
  unsigned char lo = 0x80, hi = 0xbf;
  size_t n, i;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    else if (c == 0xed)
      hi = 0x9f; /* surrogates */
  }
  else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    else if (c == 0xf4)
      hi = 0x8f; /* past U+10FFFF */
  }
  else
    return 0;

  if (s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < n; ++i)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

/* Write S as a quoted JSON string. */
void
tool_json_put_string (FILE *fp, const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t n;

  fputc ('"', fp);
  while (*p) {
    switch (*p) {
    case '"':
      fputs ("\\\"", fp);
      break;
    case '\\':
      fputs ("\\\\", fp);
      break;
    case '\b':
      fputs ("\\b", fp);
      break;
    case '\f':
      fputs ("\\f", fp);
      break;
    case '\n':
      fputs ("\\n", fp);
      break;
    case '\r':
      fputs ("\\r", fp);
      break;
    case '\t':
      fputs ("\\t", fp);
      break;
    default:
      if (*p < 0x20 || *p == 0x7f) {
        fprintf (fp, "\\u%04x", *p);
        break;
      }
      n = tool_utf8_length (p);
      if (n == 0) {
        fputs ("\\ufffd", fp);
        break;
      }
      fwrite (p, 1, n, fp);
      p += n;
      continue;
    }
    p++;
  }
  fputc ('"', fp);
}
