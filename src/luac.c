/*
 * luac.c: the build's stdlib compiler.  `runbook_luac OUTDIR SRCDIR REL...`
 * writes OUTDIR/REL with ".lua" replaced by ".luac": each SRCDIR/REL
 * compiled by the liblua the host links (so the bytecode's format is the
 * host's own, whatever luac is installed), stripped of its debug
 * information (line numbers, local and upvalue names): loading the 21
 * modules a one-step run needs took 3.9M instructions with it and 2.5M
 * without, a fifth of the whole run.  An error raised from the bytecode
 * still names the file (the host puts in the path of the .lua it found,
 * see src/host.c) but no line; RUNBOOK_STDLIB_SOURCE=1 loads the sources
 * instead, lines and all.  Compiling the stdlib at every start cost more
 * than everything else a one-step run does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

static int write_chunk(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return fwrite(p, 1, n, ud) == n ? 0 : 1;
}

/* mkdir -p of the directories above path. */
static int make_parents(char *path)
{
    for (char *s = strchr(path + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        int rc = mkdir(path, 0755);
        *s = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

static int compile(lua_State *L, const char *outdir, const char *srcdir, const char *rel)
{
    char src[4096], out[4096];
    size_t n = strlen(rel);
    if (n < 4 || strcmp(rel + n - 4, ".lua") != 0) {
        fprintf(stderr, "runbook_luac: %s: not a .lua file\n", rel);
        return -1;
    }
    snprintf(src, sizeof src, "%s/%s", srcdir, rel);
    snprintf(out, sizeof out, "%s/%.*sc", outdir, (int)n, rel);
    if (luaL_loadfilex(L, src, "t") != LUA_OK) {
        fprintf(stderr, "runbook_luac: %s\n", lua_tostring(L, -1));
        return -1;
    }
    FILE *f = make_parents(out) == 0 ? fopen(out, "wb") : NULL;
    int rc = f != NULL && lua_dump(L, write_chunk, f, 1) == 0 ? 0 : -1;
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "runbook_luac: cannot write %s: %s\n", out, strerror(errno));
    lua_pop(L, 1);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: runbook_luac OUTDIR SRCDIR REL.lua...\n");
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return 1;
    int rc = 0;
    for (int i = 3; i < argc && rc == 0; i++)
        rc = compile(L, argv[1], argv[2], argv[i]);
    lua_close(L);
    return rc == 0 ? 0 : 1;
}
