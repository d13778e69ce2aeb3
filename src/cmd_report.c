/* runbook report: render transcripts (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef report_options[] = {
    { RB_OPT_VALUE, "output", 'o', "FILE", "write to FILE instead of standard output" },
    { RB_OPT_VALUE, "title", 0, "TEXT", "the report's title" },
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_report(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "TRANSCRIPT...",
        "Render one or more transcripts as a Markdown incident timeline: summary,\n"
        "timeline, actions taken and who confirmed what.", report_options);
}
