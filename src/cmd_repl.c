/* runbook repl: placeholder until the REPL lands (being written now). */
#include <stdio.h>
#include "runbook/host.h"

int cmd_repl(lua_State *L, int argc, char **argv)
{
    (void)L; (void)argc; (void)argv;
    fprintf(stderr, "runbook repl: not built yet\n");
    return RB_EXIT_FAILED;
}
