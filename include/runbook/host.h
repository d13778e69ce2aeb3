/*
 * The host: one lua_State with every runbook library opened, stdlib/ on
 * package.path, and the helpers each command uses.
 *
 * Adding a command: write src/cmd_<name>.c exporting
 * `int cmd_<name>(lua_State *L, int argc, char **argv)` (argv[0] is the
 * command name) that returns an exit code, usually by describing its options
 * and calling rb_host_command(); declare it below and add one line to the
 * table in main.c.
 */
#ifndef RUNBOOK_HOST_H
#define RUNBOOK_HOST_H

#include <lua.h>
#include <lauxlib.h>
#include "runbook/args.h"

/* Exit codes (DESIGN.md). */
enum { RB_EXIT_OK = 0, RB_EXIT_FAILED = 1, RB_EXIT_USAGE = 2, RB_EXIT_INTERRUPTED = 130 };

/* A new Lua state, as luaL_newstate's but with rb_alloc (src/alloc.c):
 * blocks of 2 MiB and more live in huge pages.  NULL when out of memory. */
lua_State *rb_newstate(void);

/* The lua_Alloc of rb_newstate (exported for tests). */
void *rb_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Open the runbook libraries into L and point require() at stdlib/. [-0, +0, e] */
void rb_host_open(lua_State *L);

/* Call the function below nargs arguments with a traceback handler; on error
 * print "runbook: <message>" to stderr and return the Lua status. [-(n+1), +r, -] */
int rb_host_pcall(lua_State *L, int nargs, int nresults);

/* The directory holding stdlib/ and runbooks/ (installed share dir, or the
 * source tree for a build that is not installed). */
const char *rb_host_datadir(lua_State *L);

/* Parse argv with defs; handle --help; on a usage error print it and return
 * RB_EXIT_USAGE; else call require("runbook.cli")[name](args) and return the
 * exit code it returns. */
int rb_host_command(lua_State *L, int argc, char **argv, const char *synopsis,
                    const char *description, const rb_optdef *defs);

/* Open the Lua module "runbook.sys": small system verbs the stdlib needs
 * (directories, file modes, realpath, identity).  [-0, +1, m] */
int luaopen_runbook_sys(lua_State *L);

/* Register the metatable `name` of a handle type: gc as both __gc and
 * __close (a handle is released the same way whether collected or closed
 * by a to-be-closed variable), tostring as __tostring when not NULL and,
 * when methods is not NULL, a table of them (ending with a NULL name) as
 * __index.  [-0, +0, m] */
void rb_class(lua_State *L, const char *name, lua_CFunction gc,
              lua_CFunction tostring, const luaL_Reg *methods);

int cmd_run(lua_State *L, int argc, char **argv);
int cmd_list(lua_State *L, int argc, char **argv);
int cmd_show(lua_State *L, int argc, char **argv);
int cmd_check(lua_State *L, int argc, char **argv);
int cmd_new(lua_State *L, int argc, char **argv);
int cmd_repl(lua_State *L, int argc, char **argv);
int cmd_verify(lua_State *L, int argc, char **argv);
int cmd_report(lua_State *L, int argc, char **argv);

#endif
