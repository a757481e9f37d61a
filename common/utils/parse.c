/* Sizes, numbers and uuids (see parse.h). */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "checked-overflow.h"
#include "parse.h"

/* Multiplier for a size suffix, or 0 if SUFFIX is not one. */
static uint64_t
suffix_scale (const char *suffix)
{
  static const char units[] = "KMGTPE";
  const char *u;
  uint64_t scale = 1;
  int i, idx;

  if (*suffix == '\0')
    return 1;
  if (strcmp (suffix, "b") == 0)
    return 512;
  u = strchr (units, suffix[0] == 'k' ? 'K' : suffix[0]);
  if (u == NULL || suffix[0] == '\0')
    return 0;
  /* Accept "G", "GB", "GiB". */
  if (suffix[1] != '\0' && strcmp (suffix + 1, "B") != 0 &&
      strcmp (suffix + 1, "iB") != 0)
    return 0;
  idx = u - units;
  for (i = 0; i <= idx; ++i)
    scale *= 1024;
  return scale;
}

int
parse_size (const char *s, uint64_t *out)
{
  uint64_t v = 0, scale, r;
  const char *p = s;

  if (*p < '0' || *p > '9')
    return -EINVAL;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (MUL_OVERFLOW (v, 10, &v) || ADD_OVERFLOW (v, *p - '0', &v))
      return -ERANGE;
  }
  scale = suffix_scale (p);
  if (scale == 0)
    return -EINVAL;
  if (MUL_OVERFLOW (v, scale, &r) || r > INT64_MAX)
    return -ERANGE;
  *out = r;
  return 0;
}

int
parse_uint64 (const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
  uint64_t v = 0;
  const char *p = s;

  if (*p < '0' || *p > '9')
    return -EINVAL;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (MUL_OVERFLOW (v, 10, &v) || ADD_OVERFLOW (v, *p - '0', &v))
      return -ERANGE;
  }
  if (*p != '\0')
    return -EINVAL;
  if (v < min || v > max)
    return -ERANGE;
  *out = v;
  return 0;
}

int
parse_uint32 (const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
  uint64_t v;
  int r = parse_uint64 (s, min, max, &v);

  if (r == 0)
    *out = v;
  return r;
}

void
format_size (uint64_t bytes, char *buf, size_t len)
{
  static const char units[] = "KMGTPE";
  double v = bytes;
  int i = -1;

  if (bytes < 1024) {
    snprintf (buf, len, "%" PRIu64, bytes);
    return;
  }
  while (v >= 1024 && i < 5) {
    v /= 1024;
    ++i;
  }
  if (v == (uint64_t)v)
    snprintf (buf, len, "%" PRIu64 "%c", (uint64_t)v, units[i]);
  else
    snprintf (buf, len, "%.1f%c", v, units[i]);
}

int
uuid_generate_random (uint8_t uuid[16])
{
  size_t got = 0;
  ssize_t r;

  while (got < 16) {
    r = getrandom (uuid + got, 16 - got, 0);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    got += r;
  }
  uuid[6] = (uuid[6] & 0x0f) | 0x40; /* version 4 */
  uuid[8] = (uuid[8] & 0x3f) | 0x80; /* RFC 4122 variant */
  return 0;
}

void
uuid_format (const uint8_t u[16], char *buf)
{
  snprintf (buf, 37,
            "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
            u[11], u[12], u[13], u[14], u[15]);
}

int
uuid_is_zero (const uint8_t uuid[16])
{
  static const uint8_t zero[16];

  return memcmp (uuid, zero, 16) == 0;
}
