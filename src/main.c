/*
 * main.c: the process around the command line.  Every command runs inside
 * a protected call on a fresh lua_State (Lua's lua.c), so no error escapes
 * as a crash, and exit codes come back from the command as return values.
 *
 * The commands themselves are Lua, one file each with its options and its
 * body (stdlib/runbook/cmd/<name>.lua, listed in stdlib/runbook/cli.lua,
 * which parses the options, prints --help from the same table and does
 * the setup a command's flags ask for).  Only --version is answered here,
 * without a Lua state: it is what scripts call to probe for the tool.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/host.h"
#include "runbook/operator.h"

struct pmain_args {
    int argc;
    char **argv;
    int rc;
};

static int pmain(lua_State *L)
{
    struct pmain_args *a = lua_touserdata(L, 1);
    rb_host_open(L);
    a->rc = rb_host_main(L, a->argc, a->argv);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("runbook %s (%s)\n", RB_VERSION_STRING, LUA_RELEASE);
        return RB_EXIT_OK;
    }
    lua_State *L = rb_newstate();
    if (L == NULL) {
        fprintf(stderr, "runbook: cannot create the Lua state: out of memory\n");
        return RB_EXIT_FAILED;
    }
    struct pmain_args a = { argc - 1, argv + 1, RB_EXIT_FAILED };
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "runbook: %s\n", msg ? msg : "(error object is not a string)");
        a.rc = RB_EXIT_FAILED;
    }
    rb_closestate(L);
    rb_operator_restore_tty();
    fflush(stdout);
    return a.rc;
}
