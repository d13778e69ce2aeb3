/*
 * Command-line options, git's parse-options in small.
 *
 * Each command describes its options in a table of rb_optdef ending with a
 * zeroed entry; rb_args_parse() accepts `--name value`, `--name=value`,
 * `-x value`, `-xvalue`, repeated list options (`-p a=1 -p b=2`), `--` to end
 * options, and positional arguments anywhere.  Errors name the flag:
 * "unknown option '--dryrun' (did you mean '--dry-run'?)",
 * "option '--target' needs a value".
 */
#ifndef RUNBOOK_ARGS_H
#define RUNBOOK_ARGS_H

#include <stdio.h>
#include <lua.h>

enum rb_optkind { RB_OPT_END = 0, RB_OPT_FLAG, RB_OPT_VALUE, RB_OPT_LIST };

typedef struct rb_optdef {
    enum rb_optkind kind;
    const char *name;       /* long name without dashes: "dry-run" */
    char short_name;        /* 'p', or 0 */
    const char *metavar;    /* "STEP" in the usage text; NULL for flags */
    const char *help;       /* one line */
} rb_optdef;

#define RB_ARGS_MAXPOS 16

typedef struct rb_args {
    const rb_optdef *defs;
    int ndefs;
    int *count;             /* per def: how many times it was given */
    const char ***values;   /* per def: NULL-terminated values (argv's strings) */
    const char *pos[RB_ARGS_MAXPOS];   /* positional arguments */
    int npos;
    char error[256];        /* set when rb_args_parse returns -1 */
} rb_args;

/* Parse argv[0..argc) (argv[0] is the first argument, not the command) into
 * out; returns 0, or -1 with out->error set.  Call rb_args_free either way. */
int rb_args_parse(const rb_optdef *defs, int argc, char **argv, rb_args *out);

/* Free what rb_args_parse allocated (the strings stay argv's). */
void rb_args_free(rb_args *a);

/* Times option `name` was given (0 when absent or unknown). */
int rb_args_count(const rb_args *a, const char *name);

/* The last value of option `name`, or NULL. */
const char *rb_args_value(const rb_args *a, const char *name);

/* NULL-terminated list of the values of option `name` (never NULL). */
const char *const *rb_args_list(const rb_args *a, const char *name);

/* Print "usage: runbook <cmd> <synopsis>" and the options table. */
void rb_args_usage(FILE *f, const char *cmd, const char *synopsis,
                   const char *description, const rb_optdef *defs);

/* Push a table: option name -> true | value | {values...}, and [1..n] the
 * positional arguments.  [-0, +1, m] */
void rb_args_push(lua_State *L, const rb_args *a);

/* Open the Lua module "runbook.args": parse(options, argv) and
 * usage(command, synopsis, description, options) over an options table
 * written in Lua (stdlib/runbook/cli.lua says how).  [-0, +1, m] */
int luaopen_runbook_args(lua_State *L);

#endif
