/* tessera: the command line tool.  Options and the command table.
 *
 *   tessera [--mds ADDR[,ADDR...]] [--key-file FILE] [--json]
 *           [--timeout SECONDS]
 *           COMMAND ...
 *
 * Options may come before, between or after the command words: getopt
 * permutes them ("tessera volume create v --size 1G").  Output is spooled
 * in memory and written to stdout only if the command succeeds, so a
 * failure never leaves half a table or half a JSON document.
 */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "auth.h"
#include "frame.h"
#include "parse.h"

/* Command-specific options, as bits of tool_command.opts. */
#define OPT_SIZE 0x01       /* --size (required where allowed) */
#define OPT_REPLICAS 0x02   /* --replicas */
#define OPT_WAIT 0x04       /* --wait, --max-wait */
#define OPT_REPAIR 0x08     /* --repair */
#define OPT_MIN_COPIES 0x10 /* --min-copies */
#define OPT_FORCE 0x20      /* --force */

/* One command: its words, the usage of its arguments, how many
 * arguments it takes, and which command-specific options it accepts.
 */
struct tool_command {
  const char *word1;
  const char *word2; /* NULL for one-word commands */
  const char *args;  /* usage text of the arguments */
  int min_args;
  int max_args;
  const char *argnames[2]; /* each positional argument, for messages */
  unsigned opts;           /* OPT_* */
  int (*run) (struct tool_ctx *ctx, char **args);
  const char *help;
};

/* clang-format off */
static const struct tool_command commands[] = {
  /* word1    word2     args  min max  argnames          opts */
  { "status", NULL,     "",     0, 0, { NULL },          0,
    tool_cmd_status,        "show the cluster's state" },
  { "repair", NULL,     "[--wait [--max-wait SECONDS]]",
                                0, 0, { NULL },          OPT_WAIT,
    tool_cmd_repair,        "repair degraded segments now" },
  { "server", "list",   "",     0, 0, { NULL },          0,
    tool_cmd_server_list,   "list the storage servers" },
  { "server", "drain",  "ID",   1, 1, { "ID" },          0,
    tool_cmd_server_drain,  "move all replicas off a server" },
  { "server", "remove", "ID",   1, 1, { "ID" },          0,
    tool_cmd_server_remove, "forget an empty server" },
  { "volume", "create", "NAME --size SIZE [--replicas N] [--min-copies N]",
                                1, 1, { "NAME" },
                                OPT_SIZE | OPT_REPLICAS | OPT_MIN_COPIES,
    tool_cmd_volume_create, "create a volume" },
  { "volume", "list",   "",     0, 0, { NULL },          0,
    tool_cmd_volume_list,   "list the volumes" },
  { "volume", "info",   "NAME", 1, 1, { "NAME" },        0,
    tool_cmd_volume_info,   "show one volume" },
  { "volume", "map",    "NAME", 1, 1, { "NAME" },        0,
    tool_cmd_volume_map,    "show a volume's segment map" },
  { "volume", "verify", "NAME [--repair]",
                                1, 1, { "NAME" },        OPT_REPAIR,
    tool_cmd_volume_verify, "compare a volume's replicas" },
  { "volume", "resize", "NAME SIZE",
                                2, 2, { "NAME", "SIZE" }, 0,
    tool_cmd_volume_resize, "grow a volume to SIZE" },
  { "volume", "delete", "NAME", 1, 1, { "NAME" },        0,
    tool_cmd_volume_delete, "delete a volume and its data" },
  { "catalog", "backup", "FILE [--force]",
                                1, 1, { "FILE" },        OPT_FORCE,
    tool_cmd_catalog_backup, "copy the MDS's catalog to FILE" },
};
/* clang-format on */
#define NR_COMMANDS (sizeof commands / sizeof commands[0])

static void usage (FILE *fp, int exitcode) __attribute__ ((noreturn));
static void usage_error (const char *fmt, ...)
    __attribute__ ((noreturn, format (printf, 1, 2)));
static void command_usage_error (const struct tool_command *cmd,
                                 const char *msg, const char *arg)
    __attribute__ ((noreturn));

/* Print the full help on FP and exit with EXITCODE. */
static void
usage (FILE *fp, int exitcode)
{
  size_t i;

  fprintf (fp,
           "\n"
           "Manage a Tessera cluster: servers, volumes and repair.\n"
           "\n"
           "    %s [--mds ADDR[,ADDR...]] [--key-file FILE] [--json]\n"
           "            [--timeout SECONDS] COMMAND ...\n"
           "\n"
           "Commands:\n"
           "\n",
           TOOL_PROGRAM);
  for (i = 0; i < NR_COMMANDS; ++i) {
    char words[64];

    snprintf (words, sizeof words, "%s%s%s %s", commands[i].word1,
              commands[i].word2 ? " " : "",
              commands[i].word2 ? commands[i].word2 : "", commands[i].args);
    fprintf (fp, "    %-45s %s\n", words, commands[i].help);
  }
  fprintf (
      fp,
      "\n"
      "Options:\n"
      "\n"
      "    --mds ADDR[,ADDR...]\n"
      "                        the metadata server, or up to %d of them\n"
      "                        tried in turn to find the leader; each\n"
      "                        HOST:PORT, [V6]:PORT or unix:PATH\n"
      "                        (default $TESSERA_MDS, else %s)\n"
      "    --key-file FILE     the cluster key (default $TESSERA_KEY_FILE,\n"
      "                        else " AUTH_DEFAULT_KEY_FILE ")\n"
      "    --json              print one JSON document\n"
      "    --timeout SECONDS   bound every request (default %d, "
      "0: none)\n"
      "    --tls               TLS to the MDS and storage servers (when the\n"
      "                        cluster runs with --tls)\n"
      "    --size SIZE         volume create: size (4G, 512M, 1T)\n"
      "    --replicas N        volume create: replicas (default %d)\n"
      "    --min-copies N      volume create: ok replicas a write needs\n"
      "                        (default 1 for 1-2 replicas, else 2)\n"
      "    --wait              repair: wait until nothing is degraded\n"
      "    --max-wait SECONDS  repair --wait: give up after SECONDS\n"
      "                        (default %d)\n"
      "    --repair            volume verify: resync segments that "
      "differ\n"
      "    --force             catalog backup: replace an existing FILE\n"
      "    --help              this help\n"
      "    -V, --version       print the version\n"
      "\n"
      "Examples:\n"
      "\n"
      "    %s volume create vol0 --size 10G\n"
      "    %s --json volume list\n"
      "    %s --mds unix:/run/tessera/mds.sock server list\n"
      "    %s repair --wait\n"
      "\n"
      "Please read the tessera(1) manual page for full usage.\n"
      "\n",
      ADDRLIST_MAX, TOOL_DEFAULT_MDS, TOOL_DEFAULT_TIMEOUT,
      TOOL_DEFAULT_REPLICAS, TOOL_DEFAULT_MAX_WAIT, TOOL_PROGRAM, TOOL_PROGRAM,
      TOOL_PROGRAM, TOOL_PROGRAM);
  exit (exitcode);
}

/* A usage error: print the message, a hint, and exit 1. */
static void
usage_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: ", TOOL_PROGRAM);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry '%s --help' for more information.\n", TOOL_PROGRAM);
  exit (EXIT_FAILURE);
}

/* A usage error in command CMD: the message, then the command's usage. */
static void
command_usage_error (const struct tool_command *cmd, const char *msg,
                     const char *arg)
{
  const char *w2 = cmd->word2 ? cmd->word2 : "";

  fprintf (stderr, "%s: %s%s%s: %s%s%s\n", TOOL_PROGRAM, cmd->word1,
           cmd->word2 ? " " : "", w2, msg, arg ? ": " : "", arg ? arg : "");
  fprintf (stderr, "usage: %s [OPTIONS] %s%s%s%s%s\n", TOOL_PROGRAM, cmd->word1,
           cmd->word2 ? " " : "", w2, cmd->args[0] ? " " : "", cmd->args);
  exit (EXIT_FAILURE);
}

/* Find the command named by WORDS (N of them).  Returns the command and
 * sets *USED to the number of words it takes; exits with a usage error
 * if there is no such command.
 */
static const struct tool_command *
find_command (char **words, int n, int *used)
{
  bool group = false;
  size_t i;

  if (n == 0)
    usage_error ("missing command");

  for (i = 0; i < NR_COMMANDS; ++i) {
    if (strcmp (commands[i].word1, words[0]) != 0)
      continue;
    if (commands[i].word2 == NULL) {
      *used = 1;
      return &commands[i];
    }
    group = true;
    if (n >= 2 && strcmp (commands[i].word2, words[1]) == 0) {
      *used = 2;
      return &commands[i];
    }
  }

  if (!group)
    usage_error ("%s: unknown command", words[0]);

  /* A known group: list its subcommands. */
  {
    char list[256] = "";

    for (i = 0; i < NR_COMMANDS; ++i)
      if (commands[i].word2 && strcmp (commands[i].word1, words[0]) == 0) {
        if (list[0])
          strncat (list, ", ", sizeof list - strlen (list) - 1);
        strncat (list, commands[i].word2, sizeof list - strlen (list) - 1);
      }
    if (n < 2)
      usage_error ("%s: missing subcommand (%s)", words[0], list);
    usage_error ("%s: %s: unknown subcommand (%s)", words[0], words[1], list);
  }
}

/* Write the spooled output to stdout.  Returns 0 or -1 (printed). */
static int
flush_output (char *output, size_t len)
{
  if (len > 0 && fwrite (output, 1, len, stdout) != len) {
    tool_error ("stdout: %m");
    return -1;
  }
  if (fflush (stdout) == EOF) {
    tool_error ("stdout: %m");
    return -1;
  }
  return 0;
}

/* Options.  ':' first in the short options: getopt_long returns ':' for
 * a missing argument, which parse_options reports itself.
 */
enum {
  HELP_OPTION = CHAR_MAX + 1,
  LONG_OPTIONS,
  SHORT_OPTIONS,
  FORCE_OPTION,
  JSON_OPTION,
  KEY_FILE_OPTION,
  TLS_OPTION,
  MAX_WAIT_OPTION,
  MDS_OPTION,
  MIN_COPIES_OPTION,
  REPAIR_OPTION,
  REPLICAS_OPTION,
  SIZE_OPTION,
  TIMEOUT_OPTION,
  WAIT_OPTION,
};
static const char short_options[] = ":V";
static const struct option long_options[] = {
  { "force", no_argument, NULL, FORCE_OPTION },
  { "help", no_argument, NULL, HELP_OPTION },
  { "json", no_argument, NULL, JSON_OPTION },
  { "key-file", required_argument, NULL, KEY_FILE_OPTION },
  { "long-options", no_argument, NULL, LONG_OPTIONS },
  { "max-wait", required_argument, NULL, MAX_WAIT_OPTION },
  { "mds", required_argument, NULL, MDS_OPTION },
  { "min-copies", required_argument, NULL, MIN_COPIES_OPTION },
  { "repair", no_argument, NULL, REPAIR_OPTION },
  { "replicas", required_argument, NULL, REPLICAS_OPTION },
  { "short-options", no_argument, NULL, SHORT_OPTIONS },
  { "size", required_argument, NULL, SIZE_OPTION },
  { "timeout", required_argument, NULL, TIMEOUT_OPTION },
  { "tls", no_argument, NULL, TLS_OPTION },
  { "version", no_argument, NULL, 'V' },
  { "wait", no_argument, NULL, WAIT_OPTION },
  { NULL, 0, NULL, 0 },
};

/* Print each long option (--long-options) or short option
 * (--short-options), one per line, for the man page test.
 */
static void
list_options (bool want_long)
{
  size_t i;

  if (want_long) {
    for (i = 0; long_options[i].name != NULL; ++i)
      if (strcmp (long_options[i].name, "long-options") != 0 &&
          strcmp (long_options[i].name, "short-options") != 0)
        printf ("--%s\n", long_options[i].name);
  }
  else {
    for (i = 0; short_options[i]; ++i)
      if (short_options[i] != ':' && short_options[i] != '+')
        printf ("-%c\n", short_options[i]);
  }
}

/* Parse the options (anywhere on the command line) into CTX and return
 * the index of the first command word.  Exits on --help, --version and
 * usage errors.
 */
static int
parse_options (int argc, char *argv[], struct tool_ctx *ctx)
{
  const char *env, *mds = NULL;
  const char *mds_from = "--mds";
  char errmsg[256];
  uint32_t timeout = TOOL_DEFAULT_TIMEOUT;
  int c;

  opterr = 0;
  env = getenv ("TESSERA_KEY_FILE");
  ctx->key_file = env && env[0] ? env : AUTH_DEFAULT_KEY_FILE;

  while ((c = getopt_long (argc, argv, short_options, long_options, NULL)) !=
         -1) {
    switch (c) {
    case HELP_OPTION:
      usage (stdout, EXIT_SUCCESS);

    case LONG_OPTIONS:
    case SHORT_OPTIONS:
      list_options (c == LONG_OPTIONS);
      exit (EXIT_SUCCESS);

    case 'V':
      printf ("%s %s\n", TOOL_PROGRAM, PACKAGE_VERSION);
      exit (EXIT_SUCCESS);

    case FORCE_OPTION:
      ctx->force = true;
      break;

    case JSON_OPTION:
      ctx->json = true;
      break;

    case KEY_FILE_OPTION:
      ctx->key_file = optarg;
      break;

    case TLS_OPTION:
      ctx->tls = true;
      break;

    case MAX_WAIT_OPTION:
      if (parse_uint32 (optarg, 0, TOOL_MAX_TIMEOUT, &ctx->max_wait) < 0)
        usage_error ("--max-wait: %s: must be a number of seconds from 0 "
                     "to %d",
                     optarg, TOOL_MAX_TIMEOUT);
      ctx->max_wait_set = true;
      break;

    case MDS_OPTION:
      mds = optarg;
      break;

    case MIN_COPIES_OPTION:
      if (parse_uint32 (optarg, 1, PROTO_REPLICAS_MAX, &ctx->min_copies) < 0)
        usage_error ("--min-copies: %s: must be a number from 1 to %d", optarg,
                     PROTO_REPLICAS_MAX);
      ctx->min_copies_set = true;
      break;

    case REPAIR_OPTION:
      ctx->repair = true;
      break;

    case REPLICAS_OPTION:
      if (parse_uint32 (optarg, 1, PROTO_REPLICAS_MAX, &ctx->replicas) < 0)
        usage_error ("--replicas: %s: must be a number from 1 to %d", optarg,
                     PROTO_REPLICAS_MAX);
      ctx->replicas_set = true;
      break;

    case SIZE_OPTION:
      if (tool_parse_volume_size ("--size", optarg, &ctx->size) < 0)
        exit (EXIT_FAILURE);
      ctx->size_set = true;
      break;

    case TIMEOUT_OPTION:
      if (parse_uint32 (optarg, 0, TOOL_MAX_TIMEOUT, &timeout) < 0)
        usage_error ("--timeout: %s: must be a number of seconds from 0 "
                     "to %d",
                     optarg, TOOL_MAX_TIMEOUT);
      break;

    case WAIT_OPTION:
      ctx->wait = true;
      break;

    case ':':
      usage_error ("%s: missing argument", argv[optind - 1]);

    default: /* '?' */
      if (optopt && optopt < CHAR_MAX)
        usage_error ("-%c: unknown option", optopt);
      usage_error ("%s: unknown option", argv[optind - 1]);
    }
  }
  ctx->timeout_ms = (int)timeout * 1000;
  if (!ctx->max_wait_set)
    ctx->max_wait = TOOL_DEFAULT_MAX_WAIT;

  /* The MDS addresses: --mds (the last one), else the environment. */
  if (mds == NULL) {
    env = getenv ("TESSERA_MDS");
    mds = env && env[0] ? env : TOOL_DEFAULT_MDS;
    mds_from = "TESSERA_MDS";
  }
  if (addrlist_parse (mds, &ctx->mds, errmsg, sizeof errmsg) < 0)
    usage_error ("%s: %s", mds_from, errmsg);
  return optind;
}

/* Parse the options, find the command, run it against the MDS, and copy
 * its output to stdout if it succeeded (or returned
 * TOOL_FAILED_WITH_OUTPUT).
 */
int
main (int argc, char *argv[])
{
  struct tool_ctx ctx = { 0 };
  const struct tool_command *cmd;
  char *output = NULL;
  size_t output_len = 0;
  int r, nwords, used;
  char **words;

  r = parse_options (argc, argv, &ctx);
  words = &argv[r];
  nwords = argc - r;
  cmd = find_command (words, nwords, &used);
  words += used;
  nwords -= used;
  if (nwords < cmd->min_args)
    command_usage_error (cmd, "missing argument", cmd->argnames[nwords]);
  if (nwords > cmd->max_args)
    command_usage_error (cmd, "unexpected argument", words[cmd->max_args]);
  if (ctx.size_set && !(cmd->opts & OPT_SIZE))
    command_usage_error (cmd, "--size is not allowed here", NULL);
  if (ctx.replicas_set && !(cmd->opts & OPT_REPLICAS))
    command_usage_error (cmd, "--replicas is not allowed here", NULL);
  if (ctx.min_copies_set && !(cmd->opts & OPT_MIN_COPIES))
    command_usage_error (cmd, "--min-copies is not allowed here", NULL);
  if (ctx.wait && !(cmd->opts & OPT_WAIT))
    command_usage_error (cmd, "--wait is not allowed here", NULL);
  if (ctx.max_wait_set && !ctx.wait)
    command_usage_error (cmd, "--max-wait needs --wait", NULL);
  if (ctx.repair && !(cmd->opts & OPT_REPAIR))
    command_usage_error (cmd, "--repair is not allowed here", NULL);
  if (ctx.force && !(cmd->opts & OPT_FORCE))
    command_usage_error (cmd, "--force is not allowed here", NULL);
  if ((cmd->opts & OPT_SIZE) && !ctx.size_set)
    command_usage_error (cmd, "--size is required", NULL);

  ctx.out = open_memstream (&output, &output_len);
  if (ctx.out == NULL) {
    tool_error ("open_memstream: %m");
    exit (EXIT_FAILURE);
  }

  r = cmd->run (&ctx, words);
  proto_client_close (ctx.client);
  addrlist_free (&ctx.mds);

  if (fclose (ctx.out) == EOF) {
    tool_error ("output: %m");
    r = -EIO;
  }
  /* Output stands on success and on TOOL_FAILED_WITH_OUTPUT. */
  if (r >= 0 && flush_output (output, output_len) < 0)
    r = -EIO;
  free (output);
  exit (r == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}
