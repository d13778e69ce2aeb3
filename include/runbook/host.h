/*
 * The host: one lua_State with every runbook library opened, stdlib/ on
 * package.path, and the helpers the libraries use.
 *
 * The commands are Lua: stdlib/runbook/cli.lua says how to add one.  A
 * command that needs C of its own uses a host library, as repl uses
 * runbook.lineedit (src/lineedit.c).
 */
#ifndef RUNBOOK_HOST_H
#define RUNBOOK_HOST_H

#include <lua.h>
#include <lauxlib.h>
#include "runbook/args.h"

/* Exit codes (DESIGN.md). */
enum { RB_EXIT_OK = 0, RB_EXIT_FAILED = 1, RB_EXIT_USAGE = 2, RB_EXIT_INTERRUPTED = 130 };

/* A new Lua state, as luaL_newstate's but with rb_alloc (src/alloc.c):
 * blocks of 2 MiB and more live in huge pages.  Its collector is stopped
 * (start-up only loads modules, which stay): runbook.cli restarts it
 * before the command runs.  NULL when out of memory. */
lua_State *rb_newstate(void);

/* Close L, made by rb_newstate, just before the process exits: every
 * finalizer runs (a connection's goodbye, a module's dlclose), but Lua's
 * blocks are left for the kernel to take back with the heap instead of
 * being freed one by one (about 5,800 free() calls: a one-step run took
 * 5.38M instructions instead of 5.95M).  A sanitizer build frees them, so that
 * LeakSanitizer still sees a block Lua lost. */
void rb_closestate(lua_State *L);

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

/* Open the Lua module "runbook.sys": small system verbs the stdlib needs
 * (directories, file modes, realpath, identity).  [-0, +1, m] */
int luaopen_runbook_sys(lua_State *L);

/* Register the metatable `name` of a handle type: gc as both __gc and
 * __close (a handle is released the same way whether collected or closed
 * by a to-be-closed variable), tostring as __tostring when not NULL and,
 * when methods is not NULL, a table of them (ending with a NULL name) as
 * __index, each with the metatable as its upvalue 1 (for rb_self).
 * [-0, +0, m] */
void rb_class(lua_State *L, const char *name, lua_CFunction gc,
              lua_CFunction tostring, const luaL_Reg *methods);

/* A method's self (argument 1) as luaL_checkudata(L, 1, name) gives it,
 * for a method of `name` registered by rb_class or a continuation of one:
 * its metatable is compared with the method's upvalue 1, not looked up in
 * the registry by name (those lookups were 2,300 of a recorded Redis
 * call's instructions).  Anything else raises as luaL_checkudata does.
 * [-0, +0, v] */
void *rb_self(lua_State *L, const char *name);

/* Open the Lua module "runbook.lineedit": loop(session), the REPL's
 * reading loop (src/lineedit.c, the C module runbook/lineedit.so, loaded
 * by the first require: libedit costs the other commands nothing).  [-0, +1, m] */
int luaopen_runbook_lineedit(lua_State *L);

/* Run the command line: require("runbook.cli").main(argv), argv[0] the
 * command's name; returns its exit code.  [-0, +0, -] */
int rb_host_main(lua_State *L, int argc, char **argv);

#endif
