/*
 * Command-line options, git's parse-options in small.  See args.h.
 *
 * Values are never copied: out->values holds argv's own strings, so the
 * result lives as long as argv does.  Abbreviated long options are refused
 * on purpose (a later option could make `--dry` mean something else in a
 * saved command line); the error suggests the full name instead.
 */
#include "runbook/args.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static void fail(rb_args *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof a->error, fmt, ap);
    va_end(ap);
}

static int find_long(const rb_optdef *defs, int ndefs, const char *name,
                     size_t len)
{
    for (int i = 0; i < ndefs; i++)
        if (strlen(defs[i].name) == len && !strncmp(defs[i].name, name, len))
            return i;
    return -1;
}

static int find_short(const rb_optdef *defs, int ndefs, char c)
{
    for (int i = 0; i < ndefs; i++)
        if (defs[i].short_name && defs[i].short_name == c)
            return i;
    return -1;
}

static int def_index(const rb_args *a, const char *name)
{
    if (!a->defs || !name)
        return -1;
    return find_long(a->defs, a->ndefs, name, strlen(name));
}

/* Levenshtein distance, capped: anything above 3 is "too far" anyway. */
static size_t edit_distance(const char *s, size_t n, const char *t)
{
    size_t m = strlen(t), row[64];
    if (n >= 63 || m >= 63)
        return 99;
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j], best = diag + (s[i - 1] != t[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

/* The long name the user most likely meant: one that the typed name
 * abbreviates, else the nearest within two edits; NULL when nothing is
 * close.  Two edits turn any two-letter word into any other, so the typed
 * name must be longer than its distance to count as a typo. */
static const char *suggest(const rb_optdef *defs, int ndefs,
                           const char *name, size_t len)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (int i = 0; i < ndefs; i++) {
        size_t d = edit_distance(name, len, defs[i].name);
        if (d >= len)
            d = 3;
        if (d > 1 && len > 0 && !strncmp(defs[i].name, name, len))
            d = 1;
        if (d < best_d) {
            best = defs[i].name;
            best_d = d;
        }
    }
    return best;
}

static int add_value(rb_args *a, int i, const char *v)
{
    int n = a->count[i];
    const char **vs = realloc(a->values[i], (size_t)(n + 2) * sizeof *vs);
    if (!vs) {
        fail(a, "out of memory");
        return -1;
    }
    vs[n] = v;
    vs[n + 1] = NULL;
    a->values[i] = vs;
    a->count[i] = n + 1;
    return 0;
}

/* Record option i; `flag` is how the user spelled it, for messages.
 * `inline_v` is a value glued to the option, else argv[*k + 1] is taken. */
static int take(rb_args *a, int i, const char *flag, const char *inline_v,
                int argc, char **argv, int *k)
{
    if (a->defs[i].kind == RB_OPT_FLAG) {
        if (inline_v) {
            fail(a, "option '%s' takes no value", flag);
            return -1;
        }
        a->count[i]++;
        return 0;
    }
    if (!inline_v) {
        if (*k + 1 >= argc) {
            fail(a, "option '%s' needs a value", flag);
            return -1;
        }
        inline_v = argv[++*k];
    }
    return add_value(a, i, inline_v);
}

static int parse_long(rb_args *a, int argc, char **argv, int *k)
{
    const char *name = argv[*k] + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    int i = find_long(a->defs, a->ndefs, name, len);
    if (i < 0 && len == 0) {
        fail(a, "unknown option '%s'", argv[*k]);
        return -1;
    }
    if (i < 0) {
        const char *s = suggest(a->defs, a->ndefs, name, len);
        if (s)
            fail(a, "unknown option '--%.*s' (did you mean '--%s'?)",
                 (int)len, name, s);
        else
            fail(a, "unknown option '--%.*s'", (int)len, name);
        return -1;
    }
    char flag[80];
    snprintf(flag, sizeof flag, "--%s", a->defs[i].name);
    return take(a, i, flag, eq ? eq + 1 : NULL, argc, argv, k);
}

/* A cluster of short options, getopt-style: flags may be bundled (`-yv`),
 * and the first option that takes a value ends the cluster (`-pk=v`). */
static int parse_short(rb_args *a, int argc, char **argv, int *k)
{
    for (const char *c = argv[*k] + 1; *c; c++) {
        char flag[3] = { '-', *c, 0 };
        int i = find_short(a->defs, a->ndefs, *c);
        if (i < 0) {
            fail(a, "unknown option '%s'", flag);
            return -1;
        }
        if (a->defs[i].kind != RB_OPT_FLAG)
            return take(a, i, flag, c[1] ? c + 1 : NULL, argc, argv, k);
        if (take(a, i, flag, NULL, argc, argv, k) < 0)
            return -1;
    }
    return 0;
}

static int add_positional(rb_args *a, const char *arg)
{
    if (a->npos >= RB_ARGS_MAXPOS) {
        fail(a, "too many arguments");
        return -1;
    }
    a->pos[a->npos++] = arg;
    return 0;
}

static int init(rb_args *out, const rb_optdef *defs)
{
    memset(out, 0, sizeof *out);
    out->defs = defs;
    while (defs[out->ndefs].kind != RB_OPT_END)
        out->ndefs++;
    out->count = calloc((size_t)out->ndefs + 1, sizeof *out->count);
    out->values = calloc((size_t)out->ndefs + 1, sizeof *out->values);
    if (!out->count || !out->values) {
        fail(out, "out of memory");
        return -1;
    }
    return 0;
}

int rb_args_parse(const rb_optdef *defs, int argc, char **argv, rb_args *out)
{
    if (init(out, defs) < 0)
        return -1;
    int options = 1, rc = 0;
    for (int k = 0; k < argc && rc == 0; k++) {
        const char *arg = argv[k];
        if (!options || arg[0] != '-' || arg[1] == 0)   /* "-" is stdin */
            rc = add_positional(out, arg);
        else if (!strcmp(arg, "--"))
            options = 0;
        else if (arg[1] == '-')
            rc = parse_long(out, argc, argv, &k);
        else
            rc = parse_short(out, argc, argv, &k);
    }
    return rc;
}

void rb_args_free(rb_args *a)
{
    if (a->values)
        for (int i = 0; i < a->ndefs; i++)
            free(a->values[i]);
    free(a->values);
    free(a->count);
    a->values = NULL;
    a->count = NULL;
}

int rb_args_count(const rb_args *a, const char *name)
{
    int i = def_index(a, name);
    return i < 0 || !a->count ? 0 : a->count[i];
}

const char *rb_args_value(const rb_args *a, const char *name)
{
    int n = rb_args_count(a, name);
    int i = def_index(a, name);
    return n > 0 && a->values[i] ? a->values[i][n - 1] : NULL;
}

const char *const *rb_args_list(const rb_args *a, const char *name)
{
    static const char *const none[] = { NULL };
    int i = def_index(a, name);
    if (i < 0 || !a->values || !a->values[i])
        return none;
    return a->values[i];
}

/* "-p, --param K=V" or "    --dry-run": the left column of the table. */
static int opt_cell(char *buf, size_t n, const rb_optdef *d)
{
    const char *meta = d->metavar ? d->metavar : "VALUE";
    char sh[5] = "    ";
    if (d->short_name)
        snprintf(sh, sizeof sh, "-%c, ", d->short_name);
    if (d->kind == RB_OPT_FLAG)
        return snprintf(buf, n, "%s--%s", sh, d->name);
    return snprintf(buf, n, "%s--%s %s", sh, d->name, meta);
}

void rb_args_usage(FILE *f, const char *cmd, const char *synopsis,
                   const char *description, const rb_optdef *defs)
{
    char cell[128];
    int width = 0;
    fprintf(f, "usage: runbook %s%s%s\n", cmd, synopsis ? " " : "",
            synopsis ? synopsis : "");
    if (description)
        fprintf(f, "\n%s\n", description);
    if (!defs || defs[0].kind == RB_OPT_END)
        return;
    for (const rb_optdef *d = defs; d->kind != RB_OPT_END; d++) {
        int w = opt_cell(cell, sizeof cell, d);
        width = w > width ? w : width;
    }
    fputc('\n', f);
    for (const rb_optdef *d = defs; d->kind != RB_OPT_END; d++) {
        opt_cell(cell, sizeof cell, d);
        if (d->help)
            fprintf(f, "  %-*s  %s\n", width, cell, d->help);
        else
            fprintf(f, "  %s\n", cell);
    }
}

static void push_option(lua_State *L, const rb_args *a, int i)
{
    switch (a->defs[i].kind) {
    case RB_OPT_FLAG:
        lua_pushboolean(L, 1);
        break;
    case RB_OPT_VALUE:
        lua_pushstring(L, a->values[i][a->count[i] - 1]);
        break;
    default:
        lua_createtable(L, a->count[i], 0);
        for (int j = 0; j < a->count[i]; j++) {
            lua_pushstring(L, a->values[i][j]);
            lua_rawseti(L, -2, j + 1);
        }
    }
    lua_setfield(L, -2, a->defs[i].name);
}

void rb_args_push(lua_State *L, const rb_args *a)
{
    lua_createtable(L, a->npos, a->ndefs);
    for (int i = 0; a->count && i < a->ndefs; i++)
        if (a->count[i] > 0)
            push_option(L, a, i);
    for (int j = 0; j < a->npos; j++) {
        lua_pushstring(L, a->pos[j]);
        lua_rawseti(L, -2, j + 1);
    }
}

/* ---- Lua: runbook.args ------------------------------------------------
 * A command's options are a Lua table (stdlib/runbook/cmd/<name>.lua):
 * { name = "param", short = "p", value = "K=V", list = true, help = "..." };
 * no `value` makes a flag.  The C table is built from it on each call; its
 * strings stay the Lua table's, which the caller holds on the stack. */

#define PARSED_MT "runbook.args.parsed"

static void check_def(lua_State *L, int t, int i, rb_optdef *d)
{
    lua_rawgeti(L, t, i);
    if (!lua_istable(L, -1))
        luaL_error(L, "args: option %d is not a table", i);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "short");
    lua_getfield(L, -3, "value");
    lua_getfield(L, -4, "list");
    lua_getfield(L, -5, "help");
    size_t shortlen = 0;
    d->name = lua_tostring(L, -5);
    const char *sh = lua_tolstring(L, -4, &shortlen);
    if (d->name == NULL || (sh != NULL && shortlen != 1))
        luaL_error(L, "args: option %d needs a name and at most a one-letter short name", i);
    d->short_name = sh ? sh[0] : 0;
    d->metavar = lua_type(L, -3) == LUA_TSTRING ? lua_tostring(L, -3) : NULL;
    d->kind = lua_toboolean(L, -2) ? RB_OPT_LIST : lua_toboolean(L, -3) ? RB_OPT_VALUE : RB_OPT_FLAG;
    d->help = lua_tostring(L, -1);
    lua_pop(L, 6);
}

/* The rb_optdef array for the options table at t, as a userdata pushed on
 * the stack.  [-0, +1, e] */
static const rb_optdef *check_defs(lua_State *L, int t)
{
    luaL_checktype(L, t, LUA_TTABLE);
    int n = (int)luaL_len(L, t);
    rb_optdef *defs = lua_newuserdatauv(L, sizeof *defs * ((size_t)n + 1), 0);
    memset(defs, 0, sizeof *defs * ((size_t)n + 1));
    for (int i = 1; i <= n; i++)
        check_def(L, t, i, &defs[i - 1]);
    return defs;
}

static int l_parsed_gc(lua_State *L)
{
    rb_args_free(luaL_checkudata(L, 1, PARSED_MT));
    return 0;
}

/* args.parse(options, argv) -> the table rb_args_push makes, or nil and
 * the message naming the flag. */
static int l_parse(lua_State *L)
{
    const rb_optdef *defs = check_defs(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int argc = (int)luaL_len(L, 2);
    char **argv = lua_newuserdatauv(L, sizeof *argv * ((size_t)argc + 1), 0);
    for (int i = 1; i <= argc; i++) {
        lua_rawgeti(L, 2, i);
        argv[i - 1] = (char *)luaL_checkstring(L, -1);   /* argv's table keeps it */
        lua_pop(L, 1);
    }
    argv[argc] = NULL;
    rb_args *a = lua_newuserdatauv(L, sizeof *a, 0);
    memset(a, 0, sizeof *a);
    luaL_setmetatable(L, PARSED_MT);
    if (rb_args_parse(defs, argc, argv, a) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, a->error);
        return 2;
    }
    rb_args_push(L, a);
    return 1;
}

/* args.usage(command, synopsis, description, options): the --help text,
 * on standard output. */
static int l_usage(lua_State *L)
{
    const char *cmd = luaL_checkstring(L, 1);
    const char *synopsis = luaL_optstring(L, 2, NULL);
    const char *description = luaL_optstring(L, 3, NULL);
    const rb_optdef *defs = check_defs(L, 4);
    rb_args_usage(stdout, cmd, synopsis, description, defs);
    return 0;
}

int luaopen_runbook_args(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "parse", l_parse },
        { "usage", l_usage },
        { NULL, NULL },
    };
    luaL_newmetatable(L, PARSED_MT);
    lua_pushcfunction(L, l_parsed_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
