/*
 * main.c: argv -> subcommand, as git.c does.  Every command runs inside a
 * protected call on a fresh lua_State (Lua's lua.c), so no error escapes as
 * a crash, and exit codes come back from the command as return values.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/host.h"
#include "runbook/loop.h"
#include "runbook/operator.h"

/* Flags drive the setup main() does before calling a command. */
enum {
    NEEDS_LUA = 1,      /* a lua_State with the runbook libraries, in a protected call */
    ENDS_ON_TERM = 2,   /* SIGTERM/SIGHUP end its run cleanly (rb_loop_catch_term);
                         * without it they kill the command, which holds nothing */
};

struct command {
    const char *name;
    int (*fn)(lua_State *L, int argc, char **argv);
    int flags;
    const char *summary;
};

static const struct command commands[] = {
    { "run", cmd_run, NEEDS_LUA | ENDS_ON_TERM, "run a runbook step by step" },
    { "list", cmd_list, NEEDS_LUA, "list the runbooks that can be run" },
    { "show", cmd_show, NEEDS_LUA, "print a runbook's plan without running it" },
    { "check", cmd_check, NEEDS_LUA, "check a runbook for mistakes" },
    { "new", cmd_new, NEEDS_LUA, "write a commented skeleton runbook" },
    { "repl", cmd_repl, NEEDS_LUA | ENDS_ON_TERM, "an interactive Lua prompt with every primitive" },
    { "verify", cmd_verify, NEEDS_LUA, "check a transcript's hash chain" },
    { "report", cmd_report, NEEDS_LUA, "render transcripts as a Markdown timeline" },
    { NULL, NULL, 0, NULL },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: runbook <command> [options]\n\n"
               "Run incident runbooks step by step, with confirmations, a dry run\n"
               "and a verifiable transcript.\n\ncommands:\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(f, "  %-8s  %s\n", c->name, c->summary);
    fprintf(f, "\n'runbook <command> --help' describes a command.\n"
               "Exit codes: 0 done, 1 a step failed or aborted, 2 usage or load error,\n"
               "130 interrupted, 128+N ended by signal N (143 SIGTERM, 129 SIGHUP).\n");
}

struct pmain_args {
    const struct command *cmd;
    int argc;
    char **argv;
    int rc;
};

static int pmain(lua_State *L)
{
    struct pmain_args *a = lua_touserdata(L, 1);
    rb_host_open(L);
    if (a->cmd->flags & ENDS_ON_TERM)
        rb_loop_catch_term();
    a->rc = a->cmd->fn(L, a->argc, a->argv);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return RB_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return RB_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("runbook %s (%s)\n", RB_VERSION_STRING, LUA_RELEASE);
        return RB_EXIT_OK;
    }
    const struct command *cmd = commands;
    while (cmd->name != NULL && strcmp(cmd->name, argv[1]) != 0)
        cmd++;
    if (cmd->name == NULL) {
        fprintf(stderr, "runbook: '%s' is not a command. See 'runbook --help'.\n", argv[1]);
        return RB_EXIT_USAGE;
    }
    if (!(cmd->flags & NEEDS_LUA))
        return cmd->fn(NULL, argc - 1, argv + 1);
    lua_State *L = rb_newstate();
    if (L == NULL) {
        fprintf(stderr, "runbook: cannot create the Lua state: out of memory\n");
        return RB_EXIT_FAILED;
    }
    struct pmain_args a = { cmd, argc - 1, argv + 1, RB_EXIT_FAILED };
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "runbook: %s\n", msg ? msg : "(error object is not a string)");
        a.rc = RB_EXIT_FAILED;
    }
    lua_close(L);
    rb_operator_restore_tty();
    fflush(stdout);
    return a.rc;
}
