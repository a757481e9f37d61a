/* Replay a fuzz corpus without libFuzzer.
 *
 * Usage: replay-NAME PATH...  Each PATH is a file or a directory whose
 * regular files (not starting with '.') are fed, in name order, to the
 * harness's LLVMFuzzerTestOneInput.  A harness that finds a broken
 * promise aborts, so the run fails on the first bad input; the name of
 * each input is printed before it runs.  Links with one fuzz-NAME.c and
 * works with gcc, so make check guards every saved input.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Inputs larger than this are refused (libFuzzer's default is 4 KiB). */
#define REPLAY_MAX (1024 * 1024)

/* Optional in a harness; NULL when it does not define one. */
#pragma weak LLVMFuzzerInitialize

static unsigned long replayed;

/* Feed the file PATH to the harness.  Returns 0 or -1. */
static int
replay_file (const char *path)
{
  FILE *fp;
  uint8_t *buf;
  size_t n;

  fp = fopen (path, "rb");
  if (fp == NULL) {
    fprintf (stderr, "replay: %s: %s\n", path, strerror (errno));
    return -1;
  }
  buf = malloc (REPLAY_MAX + 1);
  if (buf == NULL) {
    fclose (fp);
    fprintf (stderr, "replay: %s: out of memory\n", path);
    return -1;
  }
  n = fread (buf, 1, REPLAY_MAX + 1, fp);
  if (ferror (fp) || n > REPLAY_MAX) {
    fprintf (stderr, "replay: %s: read error or larger than %d bytes\n", path,
             REPLAY_MAX);
    free (buf);
    fclose (fp);
    return -1;
  }
  fclose (fp);
  printf ("replay: %s (%zu bytes)\n", path, n);
  fflush (stdout);
  /* A copy of exactly N bytes, so that ASAN sees reads past the end. */
  {
    uint8_t *exact = malloc (n ? n : 1);

    if (exact == NULL) {
      free (buf);
      return -1;
    }
    memcpy (exact, buf, n);
    LLVMFuzzerTestOneInput (exact, n);
    free (exact);
  }
  free (buf);
  replayed++;
  return 0;
}

static int
skip_entry (const struct dirent *d)
{
  return d->d_name[0] != '.';
}

/* Replay every regular file of the directory DIR in name order. */
static int
replay_dir (const char *dir)
{
  struct dirent **names;
  int i, n, r = 0;

  n = scandir (dir, &names, skip_entry, alphasort);
  if (n < 0) {
    fprintf (stderr, "replay: %s: %s\n", dir, strerror (errno));
    return -1;
  }
  for (i = 0; i < n; i++) {
    char *path;
    struct stat sb;

    if (r == 0 && asprintf (&path, "%s/%s", dir, names[i]->d_name) >= 0) {
      if (stat (path, &sb) == 0 && S_ISREG (sb.st_mode))
        r = replay_file (path);
      free (path);
    }
    free (names[i]);
  }
  free (names);
  return r;
}

int
main (int argc, char *argv[])
{
  struct stat sb;
  int i;

  if (argc < 2) {
    fprintf (stderr, "usage: %s CORPUS-DIR|FILE...\n", argv[0]);
    exit (EXIT_FAILURE);
  }
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize (&argc, &argv);
  for (i = 1; i < argc; i++) {
    if (stat (argv[i], &sb) == -1) {
      fprintf (stderr, "replay: %s: %s\n", argv[i], strerror (errno));
      exit (EXIT_FAILURE);
    }
    if ((S_ISDIR (sb.st_mode) ? replay_dir (argv[i]) : replay_file (argv[i])) <
        0)
      exit (EXIT_FAILURE);
  }
  printf ("replay: %lu inputs, no failure\n", replayed);
  exit (EXIT_SUCCESS);
}
