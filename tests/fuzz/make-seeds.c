/* Write a harness's seed corpus: valid encodings made by the encoders.
 *
 * Usage: make-seeds-NAME DIR.  Links with one fuzz-NAME.c compiled with
 * -DFUZZ_SEEDS (run-fuzz.sh --seeds builds and runs it).  Existing files
 * of the same name are replaced.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

int
fuzz_write_seed (const char *dir, const char *name, const void *data,
                 size_t len)
{
  char path[4096];
  FILE *fp;

  if ((size_t)snprintf (path, sizeof path, "%s/seed-%s", dir, name) >=
      sizeof path) {
    fprintf (stderr, "make-seeds: %s/seed-%s: name too long\n", dir, name);
    return -1;
  }
  fp = fopen (path, "wb");
  if (fp == NULL) {
    fprintf (stderr, "make-seeds: %s: %s\n", path, strerror (errno));
    return -1;
  }
  if (len > 0 && fwrite (data, 1, len, fp) != len) {
    fprintf (stderr, "make-seeds: %s: write error\n", path);
    fclose (fp);
    return -1;
  }
  if (fclose (fp) == EOF) {
    fprintf (stderr, "make-seeds: %s: %s\n", path, strerror (errno));
    return -1;
  }
  return 0;
}

int
main (int argc, char *argv[])
{
  if (argc != 2) {
    fprintf (stderr, "usage: %s CORPUS-DIR\n", argv[0]);
    exit (EXIT_FAILURE);
  }
  if (mkdir (argv[1], 0755) == -1 && errno != EEXIST) {
    fprintf (stderr, "make-seeds: %s: %s\n", argv[1], strerror (errno));
    exit (EXIT_FAILURE);
  }
  if (fuzz_make_seeds (argv[1]) < 0)
    exit (EXIT_FAILURE);
  exit (EXIT_SUCCESS);
}
